//! The read-only live status page at `/`: static HTML with a few lines of JS that poll the
//! same JSON API `status --json` and `versions --json` use (deployments; the selected one's
//! per-fabric progress and failed hosts with their reasons; what runs where for its product).
//! The page itself carries no data, so it needs no auth; the data needs the token, which the
//! page takes from the URL fragment (`/#token=...`, never sent to the server), keeps in
//! `sessionStorage`, and sends as a bearer header. Everything is inserted with
//! `textContent`, never as HTML, so host-supplied strings (failure reasons) cannot inject
//! markup.

use axum::http::header;
use axum::response::IntoResponse;

pub async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // No third-party anything; scripts only from this page.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
}

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>instream status</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{padding:.2em .7em;border-bottom:1px solid #ddd;text-align:left}
.bar{display:inline-block;width:12em;height:.8em;background:#eee;vertical-align:middle}
.ok{background:#3a3;height:100%;float:left}.ko{background:#c33;height:100%;float:left}
.halted{color:#c33}.done{color:#3a3}#msg{color:#c33}
</style></head><body>
<h1>instream</h1><p id="msg"></p>
<h2>Deployments</h2><table id="deps"><thead><tr><th>id</th><th>product</th><th>version</th><th>state</th><th>progress</th><th>success</th><th>failure</th><th>pending</th></tr></thead><tbody></tbody></table>
<h2 id="dtitle"></h2><table id="fabrics"><tbody></tbody></table>
<h3>Failed hosts</h3><table id="failed"><thead><tr><th>time</th><th>host</th><th>fabric</th><th>reason</th></tr></thead><tbody></tbody></table>
<h2 id="wtitle">What runs where</h2><table id="running"><thead><tr><th>host</th><th>fabric</th><th>version</th><th>since</th><th>through</th></tr></thead><tbody></tbody></table>
<script>
const m = location.hash.match(/token=([^&]+)/);
if (m) { sessionStorage.setItem('instream-token', decodeURIComponent(m[1])); history.replaceState(null, '', location.pathname); }
const token = sessionStorage.getItem('instream-token');
let selected = null;
const $ = (id) => document.getElementById(id);
async function api(path) {
  const r = await fetch(path, {headers: {Authorization: 'Bearer ' + token}});
  if (!r.ok) throw new Error((await r.json().catch(() => ({error: r.statusText}))).error);
  return r.json();
}
function row(tbody, cells, onclick) {
  const tr = tbody.insertRow();
  for (const c of cells) { const td = tr.insertCell(); if (c instanceof Node) td.appendChild(c); else td.textContent = c; }
  if (onclick) { tr.style.cursor = 'pointer'; tr.onclick = onclick; }
  return tr;
}
function bar(p) {
  const b = document.createElement('span'); b.className = 'bar';
  const ok = document.createElement('span'); ok.className = 'ok'; ok.style.width = p.success_pct + '%';
  const ko = document.createElement('span'); ko.className = 'ko'; ko.style.width = p.failure_pct + '%';
  b.append(ok, ko); return b;
}
const pct = (x) => x.toFixed(1) + '%';
async function tick() {
  if (!token) { $('msg').textContent = 'Open this page as /#token=<token> (the token is in the file given to instream serve --token-file).'; return; }
  try {
    const deps = await api('/api/v1/deployments?limit=20');
    const tb = $('deps').tBodies[0]; tb.replaceChildren();
    for (const d of deps) {
      const tr = row(tb, [d.id, d.product, d.version, d.state, bar(d.progress), pct(d.progress.success_pct), pct(d.progress.failure_pct), pct(d.progress.pending_pct)], () => { selected = d.id; tick(); });
      tr.className = d.state;
    }
    if (!selected && deps.length) selected = deps[0].id;
    if (selected) {
      const d = await api('/api/v1/deployments/' + encodeURIComponent(selected));
      $('dtitle').textContent = d.id + ' — ' + d.product + ' ' + d.version + ' — ' + d.state + (d.halted_reason ? ': ' + d.halted_reason : '');
      const fb = $('fabrics').tBodies[0]; fb.replaceChildren();
      for (const [f, p] of Object.entries(d.by_fabric)) row(fb, [f, bar(p), p.success + '/' + p.total + ' ok', p.failure + ' failed', (p.total - p.success - p.failure) + ' pending']);
      const h = await api('/api/v1/deployments/' + encodeURIComponent(selected) + '/hosts?state=failure');
      const hb = $('failed').tBodies[0]; hb.replaceChildren();
      for (const x of h.hosts) row(hb, [x.timestamp, x.host, x.fabric, x.reason || '']);
      const w = await api('/api/v1/products/' + encodeURIComponent(d.product) + '/running');
      $('wtitle').textContent = 'What runs where — ' + d.product;
      const wb = $('running').tBodies[0]; wb.replaceChildren();
      for (const x of w) row(wb, [x.host, x.fabric, x.version || 'unknown', x.since ? new Date(x.since).toISOString() : '', x.deployment ? (x.kind || 'deploy') + ' ' + x.deployment : '']);
    }
    $('msg').textContent = '';
  } catch (e) { $('msg').textContent = String(e.message || e); }
}
tick(); setInterval(tick, 2000);
</script></body></html>
"#;
