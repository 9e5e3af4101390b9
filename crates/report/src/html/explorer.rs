//! The report's explorer: a sortable, filterable table of the allocation
//! sites, a flame graph that zooms (click a frame) and searches (a text
//! box), and a snapshot slider that redraws the flame graph, the size
//! classes and the table at each snapshot. All of it is drawn in the page
//! by one inline script from one embedded JSON document, so the file still
//! loads nothing.
//!
//! The page stays bounded for big recordings: at most [`MAX_SNAPSHOTS`]
//! snapshots (evenly spread, the first and the last always), the
//! [`MAX_SITES`] sites that ever held the most bytes (the rest summed into
//! one "other sites" row), the [`MAX_CLASSES`] largest size classes, and
//! every frame name written once (sites refer to them by index). A
//! recording of any length gives at most a few hundred kilobytes of data.
//!
//! For headless tests (and for links that open the page in a given
//! state), a URL hash `#explore:snap=0;sortclick=bytes;filter=pool;
//! search=grow;click=grow_cache` replays those steps through the page's own
//! controls (`click` clicks the first frame of that name,
//! `sortclick` a column's header, `view` scrolls to an element) and then
//! sets `data-explored="yes"` on the body.

use std::collections::HashMap;
use std::fmt::Write;

use leaktrail_analysis::investigation::Investigation;
use leaktrail_analysis::profile::{SiteCounts, SiteKey};
use serde_json::{json, Value};

use super::escape;
use crate::flamegraph::frame_name;
use crate::{diagnosis, text};

/// Snapshots the slider steps through, at most.
pub const MAX_SNAPSHOTS: usize = 40;
/// Sites in the table and the flame graphs, at most.
pub const MAX_SITES: usize = 400;
/// Size classes shown per snapshot, at most.
pub const MAX_CLASSES: usize = 24;

/// Where each suspect (by rank) and leak group (by index) sits in the
/// page, for the links between them.
#[derive(Default)]
pub struct Links {
    /// The leak group (index into the findleaks groups) of each site key.
    pub leak_group: HashMap<SiteKey, usize>,
}

impl Links {
    /// Matches the findleaks groups to sites by their stacks.
    pub fn of(inv: &Investigation) -> Links {
        let mut leak_group = HashMap::new();
        if let Some(l) = &inv.leaks {
            for (i, g) in l.leaks.groups.iter().enumerate() {
                leak_group.entry(SiteKey::of(&g.stack)).or_insert(i);
            }
        }
        Links { leak_group }
    }
}

/// A site across the shown snapshots: its key, class, newest frames, and
/// bytes and buffers per snapshot.
type SiteSeries<'a> = (
    &'a SiteKey,
    u64,
    &'a [leaktrail_analysis::symbolize::Frame],
    Vec<u64>,
    Vec<u64>,
);

/// The explorer's data: snapshots, frame names, sites with their bytes and
/// buffers per snapshot, size classes per snapshot.
pub fn data(inv: &Investigation, links: &Links) -> Value {
    let shown = text::spread(inv.profiles.len(), MAX_SNAPSHOTS);
    let profiles: Vec<_> = shown.iter().map(|&i| &inv.profiles[i]).collect();
    let t0 = profiles.first().map_or(0, |p| p.time_unix_ns);
    let n = profiles.len();

    // Sites by (key, class), with their frames from the newest snapshot
    // that has them.
    let mut index: HashMap<(&SiteKey, u64), usize> = HashMap::new();
    let mut sites: Vec<SiteSeries<'_>> = Vec::new();
    for (k, p) in profiles.iter().enumerate() {
        for e in &p.entries {
            let i = *index.entry((&e.key, e.class)).or_insert_with(|| {
                sites.push((&e.key, e.class, &e.frames, vec![0; n], vec![0; n]));
                sites.len() - 1
            });
            sites[i].2 = &e.frames;
            sites[i].3[k] += e.bytes;
            sites[i].4[k] += e.count;
        }
    }
    sites.sort_by(|a, b| {
        let max = |s: &[u64]| s.iter().copied().max().unwrap_or(0);
        max(&b.3)
            .cmp(&max(&a.3))
            .then(a.0.cmp(b.0))
            .then(a.1.cmp(&b.1))
    });
    let mut other = (vec![0u64; n], vec![0u64; n], 0usize);
    for s in sites.iter().skip(MAX_SITES) {
        for k in 0..n {
            other.0[k] += s.3[k];
            other.1[k] += s.4[k];
        }
        other.2 += 1;
    }

    let mut frames: Vec<String> = Vec::new();
    let mut frame_ids: HashMap<String, usize> = HashMap::new();
    let mut intern = |name: String| -> usize {
        *frame_ids.entry(name.clone()).or_insert_with(|| {
            frames.push(name);
            frames.len() - 1
        })
    };
    // What the tracer counted per site (allocations, temporary, peak so
    // far) at each shown snapshot; absent for audits that did not count.
    let counted: Vec<Option<HashMap<&SiteKey, &SiteCounts>>> = profiles
        .iter()
        .map(|p| {
            p.counted
                .as_ref()
                .map(|c| c.sites.iter().map(|s| (&s.key, s)).collect())
        })
        .collect();
    let any_counted = counted.iter().any(Option::is_some);
    let counts_of = |key: &SiteKey| -> [Vec<u64>; 3] {
        let at = |k: usize, f: fn(&SiteCounts) -> u64| {
            counted[k]
                .as_ref()
                .and_then(|c| c.get(key))
                .map_or(0, |s| f(s))
        };
        [
            (0..n).map(|k| at(k, |s| s.allocs)).collect(),
            (0..n).map(|k| at(k, |s| s.temporary)).collect(),
            (0..n).map(|k| at(k, |s| s.peak_bytes)).collect(),
        ]
    };
    let mut other_counts = [vec![0u64; n], vec![0u64; n], vec![0u64; n]];
    if any_counted {
        for s in sites.iter().skip(MAX_SITES) {
            for (sum, add) in other_counts.iter_mut().zip(counts_of(s.0)) {
                for (a, b) in sum.iter_mut().zip(add) {
                    *a += b;
                }
            }
        }
    }
    sites.truncate(MAX_SITES);

    let rank_of: HashMap<(SiteKey, u64), usize> = inv
        .growth
        .iter()
        .flat_map(|g| g.suspects.iter())
        .map(|s| ((SiteKey::of(&s.stack), s.class), s.rank))
        .collect();
    let mut rows: Vec<Value> = sites
        .iter()
        .map(|(key, class, stack, b, c)| {
            let path: Vec<usize> = if stack.is_empty() {
                vec![intern("[no stack]".into())]
            } else {
                stack.iter().rev().map(|f| intern(frame_name(f))).collect()
            };
            let mut row = json!({
                "site": diagnosis::site(stack),
                "class": class,
                "s": path,
                "b": b,
                "c": c,
                "rank": rank_of.get(&((*key).clone(), *class)),
                "leak": links.leak_group.get(*key),
            });
            if any_counted {
                add_counts(&mut row, counts_of(key));
            }
            row
        })
        .collect();
    if other.2 > 0 {
        let name = format!("({} other sites)", other.2);
        let mut row = json!({
            "site": name.clone(),
            "class": 0,
            "s": [intern(name)],
            "b": other.0,
            "c": other.1,
            "rank": null,
            "leak": null,
        });
        if any_counted {
            add_counts(&mut row, other_counts);
        }
        rows.push(row);
    }

    let mut classes: HashMap<u64, (Vec<u64>, Vec<u64>)> = HashMap::new();
    for (k, p) in profiles.iter().enumerate() {
        for e in &p.entries {
            let c = classes
                .entry(e.class)
                .or_insert_with(|| (vec![0; n], vec![0; n]));
            c.0[k] += e.bytes;
            c.1[k] += e.count;
        }
    }
    let mut classes: Vec<_> = classes.into_iter().collect();
    classes.sort_by(|a, b| {
        let max = |s: &[u64]| s.iter().copied().max().unwrap_or(0);
        max(&b.1 .0).cmp(&max(&a.1 .0)).then(a.0.cmp(&b.0))
    });
    classes.truncate(MAX_CLASSES);

    json!({
        "snaps": profiles.iter().map(|p| json!({
            "name": p.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            "t": (p.time_unix_ns.saturating_sub(t0)) as f64 / 1e9,
        })).collect::<Vec<_>>(),
        "of": inv.profiles.len(),
        "frames": frames,
        "counted": any_counted,
        "sites": rows,
        "classes": classes.iter().map(|(class, (b, c))| json!({"class": class, "b": b, "c": c})).collect::<Vec<_>>(),
    })
}

/// Adds a site's counts per snapshot to its row: `a` allocations, `tmp`
/// temporary allocations, `pk` the peak of its live bytes so far (for a
/// site with several size classes, each row shows the whole site's).
fn add_counts(row: &mut Value, [a, tmp, pk]: [Vec<u64>; 3]) {
    row["a"] = json!(a);
    row["tmp"] = json!(tmp);
    row["pk"] = json!(pk);
}

/// The data as the text of a `<script type="application/json">`: `</`
/// cannot end the element early.
pub fn embedded(data: &Value) -> String {
    data.to_string().replace("</", "<\\/")
}

/// The sites section: the filter box and the table the script fills.
pub fn sites_section(out: &mut String, inv: &Investigation) {
    out.push_str("<section id=\"sites\"><h2>Every allocation site, at the selected snapshot</h2>");
    if inv.profiles.is_empty() {
        out.push_str("<p class=\"muted\">No snapshots.</p></section>");
        return;
    }
    out.push_str(
        "<p class=\"muted\">Click a column to sort it (again to reverse); type to keep the sites whose stack mentions the text. The slider above the flame graph picks the snapshot.</p>\
         <input id=\"site-filter\" type=\"search\" placeholder=\"filter sites (function, file)\" size=\"40\">\
         <span id=\"sites-status\" class=\"muted\"></span>\
         <table id=\"sites-table\" class=\"sortable\"><thead><tr>\
         <th data-key=\"rank\">suspect</th><th class=\"l\" data-key=\"site\">site</th><th data-key=\"class\">class</th>\
         <th data-key=\"bytes\">live bytes</th><th data-key=\"count\">buffers</th><th data-key=\"grew\">grew since first</th>",
    );
    if inv.profiles.iter().any(|p| p.counted.is_some()) {
        // heaptrack's numbers per site, counted by the tracer since it
        // started: the whole site's, over all its size classes.
        out.push_str(
            "<th data-key=\"allocs\" title=\"allocations made at this site since the tracer started (all sizes)\">allocations</th>\
             <th data-key=\"temporary\" title=\"allocations freed by the same thread right after being made\">temporary</th>\
             <th data-key=\"peak\" title=\"the most live bytes this site held at once, up to this snapshot\">peak</th>",
        );
    }
    out.push_str("<th class=\"l\">links</th></tr></thead><tbody></tbody></table></section>");
}

/// The interactive part of the flame graph section: the slider, the
/// search box, the graph and the size classes at the snapshot.
pub fn flame_explorer(out: &mut String, inv: &Investigation) {
    if inv.profiles.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<div id=\"explorer\"><div class=\"controls\">\
         <label>snapshot <input id=\"snap\" type=\"range\" min=\"0\" max=\"{}\" value=\"{}\"></label> \
         <span id=\"snap-label\"></span> \
         <input id=\"flame-search\" type=\"search\" placeholder=\"search frames\" size=\"24\"> \
         <button id=\"flame-reset\" type=\"button\">reset zoom</button></div>\
         <p id=\"flame-status\" class=\"muted\"></p>\
         <div id=\"flame-live\" class=\"flame\"></div>\
         <h3>Size classes at this snapshot</h3>\
         <table id=\"classes-at\"><thead><tr><th class=\"l\">class</th><th>live bytes</th><th>buffers</th><th class=\"l\"></th></tr></thead><tbody></tbody></table>\
         <p class=\"muted\">Click a frame to zoom into it, the bottom bar to zoom out. {}</p></div>",
        text::spread(inv.profiles.len(), MAX_SNAPSHOTS).len().saturating_sub(1),
        text::spread(inv.profiles.len(), MAX_SNAPSHOTS).len().saturating_sub(1),
        escape(&if inv.profiles.len() > MAX_SNAPSHOTS {
            format!(
                "{} of the {} snapshots, evenly spread.",
                MAX_SNAPSHOTS,
                inv.profiles.len()
            )
        } else {
            String::new()
        })
    );
}

/// The explorer's style.
pub const STYLE: &str = r#"
#explorer .controls { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; margin: 4px 0 8px; }
#explorer input[type=range] { width: 320px; vertical-align: middle; }
.flame { position: relative; width: 100%; font: 12px monospace; margin: 6px 0 12px; }
.flame .fr { position: absolute; height: 17px; box-sizing: border-box; border: 1px solid #fff; overflow: hidden; white-space: nowrap; padding: 0 3px; cursor: pointer; border-radius: 2px; color: #222; }
.flame .fr:hover { border-color: #000; }
.flame .fr.match { background: #e377c2 !important; color: #fff; }
table.sortable th[data-key] { cursor: pointer; user-select: none; }
table.sortable th.sorted::after { content: " ▼"; } table.sortable th.sorted.asc::after { content: " ▲"; }
#sites-table td.site { text-align: left; max-width: 640px; overflow: hidden; text-overflow: ellipsis; }
tr.suspect-row td { background: #fff2f0; }
"#;

/// The explorer's script.
pub const SCRIPT: &str = r##"
(function () {
  var el = document.getElementById('explorer-data');
  if (!el) { return; }
  var D = JSON.parse(el.textContent);
  var S = { snap: D.snaps.length - 1, zoom: [], search: '', sort: 'bytes', desc: true, filter: '' };
  var ROW = 18;
  function bytes(n) {
    var u = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'], v = Math.abs(n), i = 0;
    while (v >= 1024 && i + 1 < u.length) { v /= 1024; i++; }
    return (n < 0 ? '-' : '') + (i === 0 ? v.toFixed(0) : v.toFixed(1)) + ' ' + u[i];
  }
  function signed(n) { return n > 0 ? '+' + bytes(n) : bytes(n); }
  function count(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ','); }
  function $(id) { return document.getElementById(id); }
  function tree(k) {
    var root = { name: 'all', v: 0, kids: {}, order: [] };
    D.sites.forEach(function (s) {
      var v = s.b[k];
      if (!v) { return; }
      root.v += v;
      var node = root;
      s.s.forEach(function (f) {
        var kid = node.kids[f];
        if (!kid) { kid = node.kids[f] = { name: D.frames[f], v: 0, kids: {}, order: [] }; node.order.push(f); }
        kid.v += v;
        node = kid;
      });
    });
    return root;
  }
  function colour(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) { h = (h * 31 + name.charCodeAt(i)) >>> 0; }
    return 'hsl(' + (10 + h % 40) + ',' + (70 + h % 25) + '%,' + (55 + (h >> 8) % 15) + '%)';
  }
  function drawFlame() {
    var root = tree(S.snap), base = root, path = [];
    for (var i = 0; i < S.zoom.length; i++) {
      var next = null;
      for (var f in base.kids) { if (base.kids[f].name === S.zoom[i]) { next = base.kids[f]; } }
      if (!next) { break; }
      base = next; path.push(next.name);
    }
    S.zoom = path;
    var box = $('flame-live');
    box.innerHTML = '';
    var depth = 0, matched = 0, needle = S.search.toLowerCase();
    var frag = document.createDocumentFragment();
    function add(node, d, x, w, p, inMatch) {
      if (w < 0.001 || !node.v) { return; }
      depth = Math.max(depth, d);
      var div = document.createElement('div');
      div.className = 'fr';
      var hit = needle && node.name.toLowerCase().indexOf(needle) >= 0;
      if (hit) { div.className += ' match'; if (!inMatch) { matched += node.v; } }
      div.style.left = (x * 100) + '%';
      div.style.width = (w * 100) + '%';
      div.style.bottom = (d * ROW) + 'px';
      div.style.background = colour(node.name);
      div.setAttribute('data-name', node.name);
      div.setAttribute('data-bytes', String(node.v));
      div.title = node.name + ': ' + bytes(node.v) + ' (' + (100 * node.v / Math.max(base.v, 1)).toFixed(1) + '%)';
      if (w > 0.02) { div.textContent = node.name; }
      div.addEventListener('click', function () { S.zoom = p; drawFlame(); });
      frag.appendChild(div);
      var kids = node.order.map(function (f) { return node.kids[f]; });
      kids.sort(function (a, b) { return a.name < b.name ? -1 : a.name > b.name ? 1 : 0; });
      var off = x;
      kids.forEach(function (k) {
        var kw = w * k.v / node.v;
        add(k, d + 1, off, kw, p.concat([k.name]), inMatch || hit);
        off += kw;
      });
    }
    // The bottom bar is the zoomed frame (or all): clicking it zooms out one level.
    var bottom = { name: base === root ? 'all' : base.name, v: base.v, kids: base.kids, order: base.order };
    add(bottom, 0, 0, 1, path.slice(0, Math.max(path.length - 1, 0)), false);
    box.appendChild(frag);
    box.style.height = ((depth + 1) * ROW + 2) + 'px';
    var snap = D.snaps[S.snap];
    var status = 'snapshot ' + snap.name + ' (' + (S.snap + 1) + ' of ' + D.snaps.length + '): ' + bytes(root.v) + ' live';
    status += '; zoom: ' + (path.length ? path.join(' > ') + ' (' + bytes(base.v) + ')' : 'all');
    if (needle) { status += '; search "' + S.search + '": ' + bytes(matched) + ' (' + (100 * matched / Math.max(base.v, 1)).toFixed(1) + '%)'; }
    $('flame-status').textContent = status;
    $('snap-label').textContent = snap.name + ' at ' + snap.t.toFixed(1) + 's';
  }
  function drawClasses() {
    var k = S.snap, rows = D.classes.filter(function (c) { return c.b[k] > 0; });
    rows.sort(function (a, b) { return b.b[k] - a.b[k]; });
    var max = rows.length ? rows[0].b[k] : 1, html = '';
    rows.forEach(function (c) {
      html += '<tr data-class="' + c.class + '"><td class="l">' + (c.class ? c.class + ' B' : 'mixed') + '</td><td>' + bytes(c.b[k]) + '</td><td>' + count(c.c[k]) +
        '</td><td class="l"><span style="display:inline-block;height:10px;background:#1f77b4;width:' + Math.round(160 * c.b[k] / max) + 'px"></span></td></tr>';
    });
    document.querySelector('#classes-at tbody').innerHTML = html;
  }
  function key(s, k) {
    switch (S.sort) {
      case 'rank': return s.rank == null ? Infinity : s.rank;
      case 'site': return s.site;
      case 'class': return s.class;
      case 'count': return s.c[k];
      case 'grew': return s.b[k] - s.b[0];
      case 'allocs': return s.a ? s.a[k] : 0;
      case 'temporary': return s.tmp ? s.tmp[k] : 0;
      case 'peak': return s.pk ? s.pk[k] : 0;
      default: return s.b[k];
    }
  }
  function esc(t) { return String(t).replace(/[&<>"']/g, function (c) { return '&#' + c.charCodeAt(0) + ';'; }); }
  function drawSites() {
    var k = S.snap, needle = S.filter.toLowerCase();
    var rows = D.sites.filter(function (s) {
      if (!needle) { return true; }
      if (s.site.toLowerCase().indexOf(needle) >= 0) { return true; }
      return s.s.some(function (f) { return D.frames[f].toLowerCase().indexOf(needle) >= 0; });
    });
    rows.sort(function (a, b) {
      var x = key(a, k), y = key(b, k), c = x < y ? -1 : x > y ? 1 : 0;
      return S.desc ? -c : c;
    });
    var html = '';
    rows.forEach(function (s) {
      var links = [];
      if (s.rank != null) { links.push('<a href="#suspect-' + s.rank + '">suspect #' + s.rank + '</a>'); }
      if (s.leak != null) { links.push('<a href="#leak-' + s.leak + '">leaks group</a>'); }
      html += '<tr' + (s.rank != null ? ' class="suspect-row"' : '') + '><td>' + (s.rank == null ? '' : '#' + s.rank) + '</td><td class="site" title="' + esc(s.s.map(function (f) { return D.frames[f]; }).reverse().join(' < ')) + '">' + esc(s.site) +
        '</td><td>' + (s.class ? s.class + ' B' : '') + '</td><td>' + bytes(s.b[k]) + '</td><td>' + count(s.c[k]) + '</td><td>' + signed(s.b[k] - s.b[0]) + '</td>' +
        (D.counted ? '<td>' + count(s.a[k]) + '</td><td>' + count(s.tmp[k]) + '</td><td>' + bytes(s.pk[k]) + '</td>' : '') +
        '<td class="l">' + links.join(' · ') + '</td></tr>';
    });
    document.querySelector('#sites-table tbody').innerHTML = html;
    $('sites-status').textContent = rows.length + ' of ' + D.sites.length + ' sites, sorted by ' + S.sort + (S.desc ? ' (largest first)' : ' (smallest first)');
    document.querySelectorAll('#sites-table th[data-key]').forEach(function (th) {
      th.className = th.getAttribute('data-key') === S.sort ? ('sorted' + (S.desc ? '' : ' asc')) : '';
    });
  }
  function redraw() { drawFlame(); drawClasses(); drawSites(); }
  function setSnap(k) { S.snap = Math.max(0, Math.min(D.snaps.length - 1, k)); $('snap').value = String(S.snap); redraw(); }
  $('snap').addEventListener('input', function () { setSnap(parseInt(this.value, 10)); });
  $('flame-search').addEventListener('input', function () { S.search = this.value; drawFlame(); });
  $('flame-reset').addEventListener('click', function () { S.zoom = []; drawFlame(); });
  $('site-filter').addEventListener('input', function () { S.filter = this.value; drawSites(); });
  document.querySelectorAll('#sites-table th[data-key]').forEach(function (th) {
    th.addEventListener('click', function () {
      var k = th.getAttribute('data-key');
      if (S.sort === k) { S.desc = !S.desc; } else { S.sort = k; S.desc = k !== 'site' && k !== 'rank'; }
      drawSites();
    });
  });
  redraw();
  // The test hook: replay steps from the URL hash through the controls.
  var h = decodeURIComponent(location.hash || '');
  if (h.indexOf('#explore:') === 0) {
    h.slice(9).split(';').forEach(function (step) {
      var i = step.indexOf('='), k = step.slice(0, i), v = step.slice(i + 1);
      var input = function (id) { var e = $(id); e.value = v; e.dispatchEvent(new Event('input')); };
      if (k === 'snap') { input('snap'); }
      else if (k === 'search') { input('flame-search'); }
      else if (k === 'filter') { input('site-filter'); }
      else if (k === 'view') { $(v).scrollIntoView(); }
      else if (k === 'sortclick') { document.querySelector('#sites-table th[data-key="' + v + '"]').click(); }
      else if (k === 'click') {
        var f = Array.prototype.find.call(document.querySelectorAll('#flame-live .fr'), function (e) { return e.getAttribute('data-name') === v; });
        if (f) { f.click(); } else { console.error('no frame named ' + v); }
      }
    });
    document.body.setAttribute('data-explored', 'yes');
  }
})();
"##;
