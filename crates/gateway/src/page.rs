//! The HTML the gateway shows: its home (the torrents), a torrent's index of files, and
//! a player page. Names come from torrents, so from peers: every one is escaped.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::source::TorrentView;

/// What a path segment may not hold unencoded in a URL.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'\\')
    .add(b'\'');

/// `/content/<id>/<path>` with each segment of the path percent-encoded.
pub fn file_url(id: &str, path: &str) -> String {
    let segs: Vec<String> = path
        .split('/')
        .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
        .collect();
    format!("/content/{id}/{}", segs.join("/"))
}

pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
<meta name=viewport content=\"width=device-width,initial-scale=1\">\
<title>{t}</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#111;background:#fff}}\
table{{border-collapse:collapse;width:100%}}td,th{{padding:.3rem .6rem;border-bottom:1px solid #ccc;text-align:left}}\
a{{color:#0645ad}}video{{width:100%;background:#000}}</style></head><body>{body}</body></html>",
        t = escape(title)
    )
}

fn size(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < U.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[u])
    }
}

pub fn is_media(path: &str) -> bool {
    let m = mime_guess::from_path(path).first_or_octet_stream();
    m.type_() == "video" || m.type_() == "audio"
}

pub fn home(torrents: &[TorrentView]) -> String {
    let mut rows = String::new();
    for t in torrents {
        rows.push_str(&format!(
            "<tr><td><a href=\"/content/{id}/\">{name}</a></td><td>{s}</td><td>{p:.0}%</td></tr>",
            id = escape(&t.id),
            name = escape(&t.name),
            s = size(t.size),
            p = if t.size == 0 {
                0.0
            } else {
                t.done as f64 * 100.0 / t.size as f64
            },
        ));
    }
    page(
        "nodus gateway",
        &format!(
            "<h1>nodus gateway</h1><p>Any torrent's files, while they download: \
<code>/content/&lt;infohash&gt;/&lt;path&gt;</code>, or <code>/content/magnet?xt=urn:btih:...</code>.</p>\
<table><thead><tr><th>torrent</th><th>size</th><th>verified</th></tr></thead><tbody>{rows}</tbody></table>"
        ),
    )
}

pub fn index(t: &TorrentView) -> String {
    let mut rows = String::new();
    for (path, len) in &t.files {
        let url = escape(&file_url(&t.id, path));
        let play = if is_media(path) {
            format!(
                " <a href=\"{}\" aria-label=\"play {}\">play</a>",
                escape(&file_url(&t.id, path)).replacen("/content/", "/play/", 1),
                escape(path)
            )
        } else {
            String::new()
        };
        rows.push_str(&format!(
            "<tr><td><a href=\"{url}\">{p}</a>{play}</td><td>{s}</td></tr>",
            p = escape(path),
            s = size(*len),
        ));
    }
    page(
        &t.name,
        &format!(
            "<h1>{name}</h1><p>{done} of {total} verified. <a href=\"/\">all torrents</a></p>\
<table><thead><tr><th>file</th><th>size</th></tr></thead><tbody>{rows}</tbody></table>",
            name = escape(&t.name),
            done = size(t.done),
            total = size(t.size),
        ),
    )
}

/// Records when the first frame showed (ms since the page began), for whoever measures
/// time to first frame (the demo, the benchmark), and only then gives the player its
/// controls: drawn beside the first frame they delayed it by about 30 ms in Chromium
/// (`nodus bench cdn`). Without frames (audio, or video that cannot play) they come
/// with the data or the error.
const FIRST_FRAME: &str = "<script>const p=document.getElementById('player');window.nodusFirstFrame=null;\
const shown=t=>{if(window.nodusFirstFrame===null){window.nodusFirstFrame=t}p.controls=true};\
if(p.requestVideoFrameCallback){p.requestVideoFrameCallback(t=>shown(t))}\
p.addEventListener('loadeddata',()=>setTimeout(()=>{p.controls=true},0),{once:true});\
p.addEventListener('error',()=>{p.controls=true});\
if(!p.requestVideoFrameCallback){p.addEventListener('loadeddata',()=>shown(performance.now()),{once:true})}</script>";

pub fn player(t: &TorrentView, path: &str) -> String {
    let src = escape(&file_url(&t.id, path));
    let tag = if mime_guess::from_path(path).first_or_octet_stream().type_() == "audio" {
        "audio"
    } else {
        "video"
    };
    page(
        path,
        &format!(
            "<h1>{p}</h1><{tag} id=player autoplay muted playsinline preload=auto src=\"{src}\"></{tag}>\
<p><a href=\"/content/{id}/\">{name}</a></p>{FIRST_FRAME}",
            p = escape(path),
            id = escape(&t.id),
            name = escape(&t.name),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_peers_are_escaped_and_urls_encoded() {
        let t = TorrentView {
            id: "ab".into(),
            name: "<script>x</script>".into(),
            files: vec![("d/a b?#<i>.mp4".into(), 3)],
            size: 3,
            done: 0,
            has_metadata: true,
        };
        let html = index(&t);
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<i>"));
        assert!(html.contains("/content/ab/d/a%20b%3F%23%3Ci%3E.mp4"));
        assert!(html.contains("/play/ab/d/a%20b%3F%23%3Ci%3E.mp4"));
        assert!(!player(&t, "d/\"onerror=alert(1).mp4").contains("\"onerror"));
    }
}
