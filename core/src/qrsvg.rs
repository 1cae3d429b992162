//! QR codes as SVG, for the widget (drawn in the visitor's browser) and for the worker's image
//! fallback on pages whose CSP blocks WebAssembly. One function, so both draw the same code.

use qrcodegen::{QrCode, QrCodeEcc};

/// An SVG of `text` as a QR code (medium error correction, 4-module quiet zone, one path).
/// `None` when the text is too long for a QR code.
pub fn qr_svg(text: &str) -> Option<String> {
    let (side, dark) = qr_modules(text)?;
    let border = 4;
    let size = side + border * 2;
    let mut svg = String::with_capacity((side * side) as usize * 4 + 240);
    svg.push_str("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 ");
    push_num(&mut svg, size);
    svg.push(' ');
    push_num(&mut svg, size);
    svg.push_str("\" shape-rendering=\"crispEdges\" role=\"img\"><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/><path d=\"");
    for (y, row) in dark.chunks(side as usize).enumerate() {
        let mut x = 0;
        while x < row.len() {
            if !row[x] {
                x += 1;
                continue;
            }
            // Runs of dark modules become one rectangle: about a third of the path length.
            let start = x;
            while x < row.len() && row[x] {
                x += 1;
            }
            let run = (x - start) as u32;
            svg.push('M');
            push_num(&mut svg, start as u32 + border);
            svg.push(',');
            push_num(&mut svg, y as u32 + border);
            svg.push('h');
            push_num(&mut svg, run);
            svg.push_str("v1h-");
            push_num(&mut svg, run);
            svg.push('z');
        }
    }
    svg.push_str("\" fill=\"#000\"/></svg>");
    Some(svg)
}

/// Decimal digits without `core::fmt`: the widget ships no formatting machinery (every visitor
/// downloads it), and a code's path is thousands of numbers.
fn push_num(out: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| d as char));
}

/// The code's modules, for drawing it (the SVG above, the widget's canvas): the side in modules and
/// the dark ones row by row, without the quiet zone. `None` when the text is too long.
pub fn qr_modules(text: &str) -> Option<(u32, Vec<bool>)> {
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium).ok()?;
    let side = qr.size();
    Some((side as u32, (0..side * side).map(|i| qr.get_module(i % side, i / side)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_match_the_svg_code() {
        let url = "http://weixin.qq.com/q/02abcDEF";
        let qr = QrCode::encode_text(url, QrCodeEcc::Medium).unwrap();
        let (side, dark) = qr_modules(url).unwrap();
        assert_eq!(side as i32, qr.size());
        assert!((0..qr.size()).all(|y| (0..qr.size()).all(|x| dark[(y * qr.size() + x) as usize] == qr.get_module(x, y))));
        assert!(qr_modules(&"x".repeat(5000)).is_none());
    }

    #[test]
    fn numbers_as_format_writes_them() {
        for n in [0, 7, 10, 99, 100, 4_000_000_001, u32::MAX] {
            let mut s = String::new();
            push_num(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }

    /// Decodes the path back into modules: every dark module and nothing else is covered.
    #[test]
    fn path_covers_exactly_the_dark_modules() {
        let url = "http://weixin.qq.com/q/02abcDEF";
        let svg = qr_svg(url).unwrap();
        let qr = QrCode::encode_text(url, QrCodeEcc::Medium).unwrap();
        let side = qr.size() + 8;
        assert!(svg.contains(&format!("viewBox=\"0 0 {side} {side}\"")), "{svg}");
        let d = svg.split("d=\"").nth(1).unwrap().split('"').next().unwrap();
        let mut dark = std::collections::HashSet::new();
        for run in d.split('M').filter(|r| !r.is_empty()) {
            let (xy, rest) = run.split_once('h').unwrap();
            let (x, y) = xy.split_once(',').unwrap();
            let (x, y): (i32, i32) = (x.parse().unwrap(), y.parse().unwrap());
            let w: i32 = rest.split('v').next().unwrap().parse().unwrap();
            for i in 0..w {
                assert!(dark.insert((x + i - 4, y - 4)), "overlap at {x},{y}");
            }
        }
        for y in 0..qr.size() {
            for x in 0..qr.size() {
                assert_eq!(dark.contains(&(x, y)), qr.get_module(x, y), "module {x},{y}");
            }
        }
        assert!(qr_svg(&"x".repeat(5000)).is_none());
    }
}
