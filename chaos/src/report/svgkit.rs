//! The SVG toolkit every picture shares (the scenario timelines, the soak's panels, `chaos
//! exec`'s timeline): one width, one header and background, one way to escape text, and the
//! grid lines and time ticks, so the pictures look alike and a fix lands once.

use std::fmt::Write as _;

/// Every picture's width, px.
pub const WIDTH: f64 = 960.0;
/// The right margin, px.
pub const RIGHT: f64 = 20.0;

/// Text made safe for SVG.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Opens a picture `height` px high: the root element and a white background.
pub fn open(out: &mut String, height: f64, font_size: u8) {
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="{font_size}">
<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>"##
    );
}

/// Closes a picture.
pub fn close(out: &mut String) {
    out.push_str("</svg>\n");
}

/// A horizontal grid line at `y` from `left` to the right margin, labelled left of it.
pub fn grid_y(out: &mut String, left: f64, y: f64, label: &str) {
    let _ = writeln!(
        out,
        r##"<line x1="{left}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
        WIDTH - RIGHT,
        left - 4.0,
        y + 4.0,
        escape(label)
    );
}

/// A tick of a time axis at `x`, 4 px down from `from`, labelled at `label_y`.
pub fn tick_x(out: &mut String, x: f64, from: f64, label_y: f64, label: &str) {
    let _ = writeln!(
        out,
        r##"<line x1="{x:.1}" x2="{x:.1}" y1="{from:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{label_y:.1}" text-anchor="middle" fill="#555">{}</text>"##,
        from + 4.0,
        escape(label)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_a_picture_is_closed() {
        assert_eq!(escape(r#"<a & "b">"#), "&lt;a &amp; &quot;b&quot;&gt;");
        let mut out = String::new();
        open(&mut out, 100.0, 11);
        tick_x(&mut out, 10.0, 50.0, 70.0, "1s");
        grid_y(&mut out, 70.0, 30.0, "<10");
        close(&mut out);
        assert!(
            out.starts_with("<svg") && out.ends_with("</svg>\n"),
            "{out}"
        );
        assert!(out.contains("&lt;10"), "{out}");
    }
}
