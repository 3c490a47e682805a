// Offline checks of the Grafana dashboards (observability/dashboards/*.json) and the
// pre-defined LogQL queries (observability/loki/queries.json). Run through dashboards.sh.
//
//   node check.mjs ts-wrappers DIR   write one .ts file per dashboard into DIR (for tsc)
//   node check.mjs lint              LogQL syntax (lezer-logql) and the structural rules
//   node check.mjs promql-rules FILE write every PromQL expression, substituted, as a rules file
//   node check.mjs list-promql       one JSON line per PromQL expression: {"dashboard","panel","ref_id","expr"}
//
// Paths are relative to the repository root (two levels up from this file).

import { readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, relative, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const dashboardsDir = join(root, 'observability', 'dashboards');
const queriesFile = join(root, 'observability', 'loki', 'queries.json');
const docFile = join(root, 'docs', 'log-queries.md');
const datasourcesFile = join(root, 'observability', 'grafana', 'provisioning', 'datasources', 'datasources.yaml');
const dashboardProvisioningFile = join(root, 'observability', 'grafana', 'provisioning', 'dashboards', 'dashboards.yaml');
const rel = (p) => relative(root, p);

// The dashboards there must be, by uid.
const EXPECTED_UIDS = ['todo-overview', 'todo-events', 'todo-websocket', 'todo-reminders', 'todo-slo', 'todo-logs'];
// Metrics that carry the `service` label: their selectors must hold service=~"$service".
const SERVICE_METRICS = new Set([
  'todo_http_requests_total',
  'todo_http_request_duration_seconds_bucket',
  'todo_http_request_duration_seconds_count',
  'todo_http_request_duration_seconds_sum',
]);
// A panel showing one of these is an "error panel": it must link to the logs dashboard.
const ERROR_PATTERNS = [
  /status_class="5xx"/,
  /todo_events_dead_lettered_total/,
  /todo_event_handler_failures_total/,
  /todo_store_errors_total/,
  /todo_webhook_attempts_total/,
  /todo_ws_closes_total/,
];
// The only variables a PromQL expression may use, and what the PromQL checks put in their place.
const PROMQL_SUBSTITUTIONS = [
  ['$__rate_interval', '1m'],
  ['$__interval', '15s'],
  ['$__range', '1h'],
  ['$namespace', '.*'],
  ['$service', '.*'],
];
// Range variables in LogQL metric queries, replaced by a duration before parsing
// (lezer-logql does not know Grafana's variables; inside strings they need no replacing).
const LOGQL_RANGE_SUBSTITUTIONS = [
  ['$__rate_interval', '1m'],
  ['$__interval', '15s'],
  ['$__range', '1h'],
  ['$__auto', '1m'],
];
const NAMESPACE_MATCHER = 'namespace=~"$namespace"';
const SERVICE_MATCHER = 'service=~"$service"';
const LOGS_LINK_PREFIX = '/d/todo-logs';

const errors = [];
const fail = (where, msg) => errors.push(`${where}: ${msg}`);

function readJson(file) {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    fail(rel(file), `not valid JSON: ${e.message}`);
    return null;
  }
}

function loadDashboards() {
  const files = readdirSync(dashboardsDir).filter((f) => f.endsWith('.json')).sort();
  return files.map((f) => ({ file: join(dashboardsDir, f), json: readJson(join(dashboardsDir, f)) }))
    .filter((d) => d.json !== null);
}

// Every panel, rows' nested panels included, in the order they appear.
function* panelsOf(dashboard) {
  for (const p of dashboard.panels ?? []) {
    yield p;
    for (const q of p.panels ?? []) yield q;
  }
}

function isPrometheusTarget(panel, target) {
  const ds = target.datasource ?? panel.datasource ?? {};
  return ds.type === 'prometheus' || ds.uid === '${datasource}';
}

function isLokiTarget(panel, target) {
  const ds = target.datasource ?? panel.datasource ?? {};
  return ds.type === 'loki' || ds.uid === 'loki';
}

function promqlTargets(dashboards) {
  const out = [];
  for (const { json } of dashboards) {
    for (const panel of panelsOf(json)) {
      for (const t of panel.targets ?? []) {
        if (isPrometheusTarget(panel, t)) {
          out.push({ dashboard: json.uid, panel: panel.title ?? '', ref_id: t.refId ?? '', expr: t.expr ?? '', target: t, panelObj: panel });
        }
      }
    }
  }
  return out;
}

function substitutePromql(expr) {
  let s = expr;
  for (const [from, to] of PROMQL_SUBSTITUTIONS) s = s.split(from).join(to);
  return s;
}

// ---------------------------------------------------------------- PromQL scanning

// Splits a PromQL expression into the brace blocks of its selectors and the bare identifiers
// outside strings and braces. Good enough for the rules checked here; promtool checks syntax.
function scanPromql(expr) {
  const blocks = []; // { metric, body }
  const identifiers = []; // { name, followedByBrace }
  let i = 0;
  let lastIdent = null;
  while (i < expr.length) {
    const c = expr[i];
    if (c === '"' || c === "'" || c === '`') {
      const q = c;
      i++;
      while (i < expr.length && expr[i] !== q) i += expr[i] === '\\' ? 2 : 1;
      i++;
      lastIdent = null;
    } else if (c === '{') {
      let j = i + 1;
      while (j < expr.length && expr[j] !== '}') {
        if (expr[j] === '"' || expr[j] === "'" || expr[j] === '`') {
          const q = expr[j];
          j++;
          while (j < expr.length && expr[j] !== q) j += expr[j] === '\\' ? 2 : 1;
        }
        j++;
      }
      blocks.push({ metric: lastIdent ? lastIdent.name : null, body: expr.slice(i + 1, j) });
      if (lastIdent) lastIdent.followedByBrace = true;
      lastIdent = null;
      i = j + 1;
    } else if (/[A-Za-z_:]/.test(c)) {
      let j = i;
      while (j < expr.length && /[A-Za-z0-9_:]/.test(expr[j])) j++;
      const ident = { name: expr.slice(i, j), followedByBrace: false };
      identifiers.push(ident);
      lastIdent = ident;
      i = j;
    } else {
      if (!/\s/.test(c)) lastIdent = null;
      i++;
    }
  }
  return { blocks, identifiers };
}

function checkPromqlTarget(where, t) {
  const expr = t.expr;
  if (typeof expr !== 'string' || expr.trim() === '') {
    fail(where, 'Prometheus target without expr');
    return;
  }
  if (t.target.datasource?.uid !== '${datasource}') {
    fail(where, 'Prometheus target datasource must be {"type":"prometheus","uid":"${datasource}"}');
  }
  const { blocks, identifiers } = scanPromql(expr);
  if (blocks.length === 0) fail(where, `no selector in: ${expr}`);
  for (const b of blocks) {
    if (!b.body.includes(NAMESPACE_MATCHER)) fail(where, `selector {${b.body}} lacks ${NAMESPACE_MATCHER}`);
    if (b.metric && SERVICE_METRICS.has(b.metric) && !b.body.includes(SERVICE_MATCHER)) {
      fail(where, `${b.metric}{${b.body}} lacks ${SERVICE_MATCHER}`);
    }
  }
  for (const id of identifiers) {
    if (/^(todo[_:]|process_)/.test(id.name) && !id.followedByBrace) {
      fail(where, `metric ${id.name} used without a selector (needs ${NAMESPACE_MATCHER})`);
    }
  }
  const left = substitutePromql(expr);
  if (left.includes('$')) fail(where, `uses a variable other than ${PROMQL_SUBSTITUTIONS.map((s) => s[0]).join(', ')}: ${expr}`);
  for (const text of [expr, t.target.legendFormat ?? '']) {
    if (/user_id|task_id/.test(text)) fail(where, `names user_id or task_id: ${text}`);
  }
  if (expr.includes('histogram_quantile(') && t.target.exemplar !== true) {
    fail(where, 'latency (histogram_quantile) target without "exemplar": true');
  }
}

// ---------------------------------------------------------------- LogQL

let logqlParser = null;
function parser() {
  if (!logqlParser) {
    const require = createRequire(import.meta.url);
    logqlParser = require('@grafana/lezer-logql').parser;
  }
  return logqlParser;
}

function substituteLogqlRanges(q) {
  let s = q;
  for (const [from, to] of LOGQL_RANGE_SUBSTITUTIONS) s = s.split(`[${from}]`).join(`[${to}]`);
  return s;
}

// Parses a LogQL query; returns the tree, or null after reporting the first error node.
function parseLogql(where, query) {
  const text = substituteLogqlRanges(query);
  const tree = parser().parse(text);
  let bad = -1;
  tree.iterate({ enter: (n) => { if (n.type.isError && bad < 0) bad = n.from; } });
  if (bad >= 0) {
    fail(where, `LogQL syntax error at offset ${bad}: ${text.slice(0, bad)} >>> ${text.slice(bad)}`);
    return null;
  }
  return { tree, text };
}

const SUBSET_NODES = new Set(['LogQL', 'Expr', 'LogExpr', 'Selector', 'Matchers', 'Matcher', 'Identifier', 'Eq', 'Re', 'String',
  'PipelineExpr', 'PipelineStage', 'LineFilters', 'LineFilter', 'Filter', 'PipeExact', 'Pipe', 'LabelParser', 'Json', 'LabelFilter']);
const STREAM_LABELS = new Set(['namespace', 'service', 'level']);
const LEVELS = new Set(['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR']);

const unquote = (s) => JSON.parse(s);

// The grammar subset of queries.json: selector (=, =~ on namespace/service/level), line filters |= "..",
// exactly one | json, then label filters name="..." / name=~"..".
function checkSubset(where, parsed) {
  const { tree, text } = parsed;
  const names = new Set();
  const stages = [];
  const selector = [];
  const labelFilters = [];
  const lineFilters = [];
  tree.iterate({
    enter: (n) => {
      names.add(n.type.name);
      if (n.type.name === 'PipelineStage') {
        const first = n.node.firstChild;
        if (first?.type.name === 'LineFilters') stages.push('line');
        else if (first?.type.name === 'Pipe' && first.nextSibling?.type.name === 'LabelParser') stages.push('json');
        else if (first?.type.name === 'Pipe' && first.nextSibling?.type.name === 'LabelFilter') stages.push('label');
        else stages.push('other');
      }
      if (n.type.name === 'Matcher') {
        const id = n.node.getChild('Identifier');
        const op = n.node.getChild('Eq') ?? n.node.getChild('Re');
        const str = n.node.getChild('String');
        const m = {
          name: id ? text.slice(id.from, id.to) : '',
          op: op ? text.slice(op.from, op.to) : '?',
          value: str ? unquote(text.slice(str.from, str.to)) : '',
        };
        const inSelector = n.node.parent?.type.name === 'Matchers';
        (inSelector ? selector : labelFilters).push(m);
      }
      if (n.type.name === 'LineFilter') {
        const str = n.node.getChild('String');
        if (str) lineFilters.push(unquote(text.slice(str.from, str.to)));
      }
    },
  });
  for (const name of names) if (!SUBSET_NODES.has(name)) fail(where, `uses ${name}, outside the grammar subset of queries.json`);
  const order = stages.join(' ');
  if (!/^(line )*json( label)*$/.test(order)) {
    fail(where, `stages must be: line filters, one | json, label filters; got: ${order || '(none)'}`);
  }
  for (const m of selector) {
    if (!STREAM_LABELS.has(m.name)) fail(where, `stream selector uses ${m.name}; the stream labels are namespace, service, level`);
  }
  if (!selector.some((m) => m.name === 'namespace' && m.op === '=~' && m.value === '$namespace')) {
    fail(where, `stream selector lacks ${NAMESPACE_MATCHER}`);
  }
  return { selector, labelFilters, lineFilters };
}

function checkQueries(queries) {
  const where0 = rel(queriesFile);
  if (!queries) return [];
  if (typeof queries.grammar !== 'string' || queries.grammar.length < 40) fail(where0, 'top-level "grammar" note missing');
  if (!Array.isArray(queries.queries) || queries.queries.length === 0) {
    fail(where0, '"queries" must be a non-empty array');
    return [];
  }
  const ids = new Set();
  for (const [i, q] of queries.queries.entries()) {
    const where = `${where0} queries[${i}] (${q.id ?? '?'})`;
    for (const key of ['id', 'title', 'query']) if (typeof q[key] !== 'string' || q[key] === '') fail(where, `"${key}" must be a non-empty string`);
    for (const key of ['situation', 'expect', 'level']) {
      if (!(key in q) || (q[key] !== null && typeof q[key] !== 'string')) fail(where, `"${key}" must be a string or null`);
    }
    if (typeof q.id === 'string' && !/^[a-z0-9]+(-[a-z0-9]+)*$/.test(q.id)) fail(where, 'id must be lower-case words joined by -');
    if (ids.has(q.id)) fail(where, `duplicate id ${q.id}`);
    ids.add(q.id);
    if (q.level !== null && q.level !== undefined && !LEVELS.has(q.level)) fail(where, `level ${q.level} is not one of ${[...LEVELS].join(', ')}`);
    if ((q.situation === null) !== (q.expect === null)) fail(where, 'a situation query has both "situation" and "expect"; a general one neither');
    if (typeof q.query !== 'string') continue;
    const parsed = parseLogql(where, q.query);
    if (!parsed) continue;
    const { selector, labelFilters, lineFilters } = checkSubset(where, parsed);
    if (q.expect !== null && typeof q.expect === 'string') {
      if (!labelFilters.some((m) => m.name === 'message' && m.op === '=' && m.value === q.expect)) {
        fail(where, `no label filter message="${q.expect}" matching "expect"`);
      }
      for (const lf of lineFilters) if (!q.expect.includes(lf)) fail(where, `line filter "${lf}" is not part of the expected message`);
      if (!selector.some((m) => m.name === 'service' && m.value === '$service')) fail(where, `stream selector lacks ${SERVICE_MATCHER}`);
    }
    if (q.level) {
      const lv = [...selector, ...labelFilters].filter((m) => m.name === 'level');
      if (!lv.some((m) => (m.op === '=' && m.value === q.level) || (m.op === '=~' && new RegExp(`^(?:${m.value})$`).test(q.level)))) {
        fail(where, `"level": ${q.level} but the query does not select that level`);
      }
    }
  }
  return queries.queries;
}

// ---------------------------------------------------------------- dashboards

function checkVariables(where, d) {
  const vars = new Map((d.templating?.list ?? []).map((v) => [v.name, v]));
  const ds = vars.get('datasource');
  if (!ds || ds.type !== 'datasource' || ds.query !== 'prometheus') fail(where, 'variable datasource (type datasource, query prometheus) missing');
  const ns = vars.get('namespace');
  if (!ns || ns.type !== 'query' || !String(ns.query ?? '').includes('label_values(todo_build_info, namespace)')) {
    fail(where, 'variable namespace (label_values(todo_build_info, namespace)) missing');
  }
  const svc = vars.get('service');
  if (!svc || svc.type !== 'query' || svc.multi !== true || svc.includeAll !== true) {
    fail(where, 'variable service (query, multi, include All) missing');
  } else if (d.uid !== 'todo-logs' && svc.query !== 'label_values(todo_http_requests_total{namespace=~"$namespace"}, service)') {
    fail(where, 'variable service must be label_values(todo_http_requests_total{namespace=~"$namespace"}, service)');
  }
}

function hasLogsLink(panel) {
  const links = [...(panel.links ?? []), ...(panel.fieldConfig?.defaults?.links ?? [])];
  return links.some((l) => typeof l.url === 'string' && l.url.startsWith(LOGS_LINK_PREFIX)
    && l.url.includes('${__url_time_range}') && /\$\{namespace(:queryparam)?\}/.test(l.url) && /\$\{service(:queryparam)?\}/.test(l.url));
}

function checkDashboards(dashboards, queries) {
  const uids = new Map();
  for (const { file, json: d } of dashboards) {
    const where = rel(file);
    if (typeof d.uid !== 'string' || d.uid === '') fail(where, 'no uid');
    if (uids.has(d.uid)) fail(where, `uid ${d.uid} also in ${uids.get(d.uid)}`);
    uids.set(d.uid, where);
    if (d.refresh !== '30s') fail(where, `refresh is ${JSON.stringify(d.refresh)}, not "30s"`);
    if (!Array.isArray(d.tags) || !d.tags.includes('todo')) fail(where, 'tags lack "todo"');
    if (!Number.isInteger(d.schemaVersion) || d.schemaVersion < 41) fail(where, `schemaVersion ${d.schemaVersion} is not an integer >= 41`);
    checkVariables(where, d);
    const ids = new Set();
    const titles = new Set();
    for (const p of panelsOf(d)) {
      const pw = `${where} panel ${JSON.stringify(p.title ?? '')}`;
      if (ids.has(p.id)) fail(pw, `duplicate panel id ${p.id}`);
      ids.add(p.id);
      if (!p.gridPos) fail(pw, 'no gridPos');
      if (p.type !== 'row' && !p.title) fail(pw, 'no title');
      if (p.type !== 'row' && titles.has(p.title)) fail(pw, 'two panels with this title (a PromQL expression is named by dashboard, panel title and refId)');
      titles.add(p.title);
      let prom = false;
      for (const t of p.targets ?? []) {
        const tw = `${pw} ${t.refId ?? ''}`;
        if (isPrometheusTarget(p, t)) {
          prom = true;
          checkPromqlTarget(tw, { expr: t.expr, target: t });
        } else if (isLokiTarget(p, t)) {
          if (t.datasource?.uid !== 'loki') fail(tw, 'Loki target datasource uid must be loki');
          if (typeof t.expr !== 'string' || t.expr === '') fail(tw, 'Loki target without expr');
          else parseLogql(tw, t.expr);
        } else {
          fail(tw, `target with unknown datasource ${JSON.stringify(t.datasource ?? p.datasource)}`);
        }
      }
      const exprs = (p.targets ?? []).map((t) => t.expr ?? '').join('\n');
      if (prom && ERROR_PATTERNS.some((re) => re.test(exprs)) && !hasLogsLink(p)) {
        fail(pw, `error panel without a link to ${LOGS_LINK_PREFIX}?\${__url_time_range}&\${namespace:queryparam}&\${service:queryparam}`);
      }
      if (p.type === 'logs' && d.uid !== 'todo-logs') fail(pw, 'logs panels belong on todo-logs');
    }
  }
  const missing = EXPECTED_UIDS.filter((u) => !uids.has(u));
  const extra = [...uids.keys()].filter((u) => !EXPECTED_UIDS.includes(u));
  if (missing.length) fail(rel(dashboardsDir), `missing dashboards: ${missing.join(', ')}`);
  if (extra.length) fail(rel(dashboardsDir), `unexpected dashboard uids: ${extra.join(', ')}`);

  // The logs dashboard: one logs panel per query of queries.json, in the same order, each with that query only.
  const logs = dashboards.find((x) => x.json.uid === 'todo-logs');
  if (logs && queries.length) {
    const where = rel(logs.file);
    const panels = [...panelsOf(logs.json)].filter((p) => p.type === 'logs');
    const got = panels.map((p) => (p.targets ?? []).map((t) => t.expr));
    for (const [i, p] of panels.entries()) {
      if ((p.targets ?? []).length !== 1) fail(`${where} panel ${JSON.stringify(p.title)}`, 'a logs panel holds exactly one query');
      if (p.datasource?.uid !== 'loki') fail(`${where} panel ${JSON.stringify(p.title)}`, 'logs panel datasource uid must be loki');
      const q = queries[i];
      if (q && p.title !== q.title) fail(`${where} panel ${JSON.stringify(p.title)}`, `title differs from queries.json ${q.id}: ${q.title}`);
    }
    const want = queries.map((q) => q.query);
    const have = got.map((g) => g[0]);
    if (JSON.stringify(want) !== JSON.stringify(have)) {
      const onlyFile = want.filter((q) => !have.includes(q));
      const onlyDash = have.filter((q) => !want.includes(q));
      fail(where, `logs panels' queries differ from queries.json (same queries, same order). Only in queries.json: ${JSON.stringify(onlyFile)}; only in the dashboard: ${JSON.stringify(onlyDash)}`
        + (onlyFile.length + onlyDash.length === 0 ? ' (the order differs)' : ''));
    }
    if (!panels.length) fail(where, 'no logs panels');
    const volume = [...panelsOf(logs.json)].some((p) => p.type !== 'logs' && (p.targets ?? []).some((t) => isLokiTarget(p, t) && /count_over_time/.test(t.expr) && /by \(level\)/.test(t.expr)));
    if (!volume) fail(where, 'no log-volume panel by level (count_over_time ... by (level))');
  }
}

function checkDoc(queries) {
  const where = rel(docFile);
  if (!existsSync(docFile)) {
    fail(where, 'missing');
    return;
  }
  const doc = readFileSync(docFile, 'utf8');
  for (const q of queries) {
    if (!doc.includes(q.query)) fail(where, `lacks the query of ${q.id} verbatim: ${q.query}`);
    if (!doc.includes(q.id)) fail(where, `does not name ${q.id}`);
  }
}

function checkProvisioning() {
  for (const f of [datasourcesFile, dashboardProvisioningFile]) if (!existsSync(f)) fail(rel(f), 'missing');
  if (existsSync(datasourcesFile)) {
    const y = readFileSync(datasourcesFile, 'utf8');
    for (const uid of ['prometheus', 'loki', 'tempo']) if (!new RegExp(`^\\s*uid: ${uid}\\s*$`, 'm').test(y)) fail(rel(datasourcesFile), `no datasource with uid ${uid}`);
    if (!/exemplarTraceIdDestinations:\s*\n\s*- name: trace_id\s*\n\s*datasourceUid: tempo/.test(y)) {
      fail(rel(datasourcesFile), 'Prometheus lacks exemplarTraceIdDestinations name trace_id -> datasourceUid tempo');
    }
  }
}

// ---------------------------------------------------------------- commands

const [cmd, arg] = process.argv.slice(2);
const dashboards = loadDashboards();

if (cmd === 'ts-wrappers') {
  // JSON has no TypeScript enum members: JsonOf<Dashboard> is Dashboard with every string enum
  // replaced by the union of its values ("absolute" for ThresholdsMode.Absolute), the way Grafana
  // reads the JSON. Everything else (unknown fields, missing required ones, wrong types, bad
  // enum values) is checked as Dashboard declares it.
  writeFileSync(join(arg, 'grafana-json.ts'), [
    "import type { Dashboard } from '@grafana/schema';",
    'type JsonOf<T> = T extends string ? `${T}` : T extends ReadonlyArray<infer U> ? Array<JsonOf<U>> : T extends object ? { [K in keyof T]: JsonOf<T[K]> } : T;',
    'export type DashboardJson = JsonOf<Dashboard>;',
    '',
  ].join('\n'));
  for (const { file } of dashboards) {
    // The JSON starts on line 1, so tsc's line numbers are the JSON file's.
    const text = readFileSync(file, 'utf8');
    writeFileSync(join(arg, basename(file, '.json') + '.ts'),
      `import type { DashboardJson } from './grafana-json'; export const dashboard: DashboardJson = ${text.trimEnd()};\n`);
  }
} else if (cmd === 'list-promql') {
  if (errors.length) {
    for (const e of errors) console.error(`FAIL ${e}`);
    process.exit(1);
  }
  process.stdout.on('error', (e) => process.exit(e.code === 'EPIPE' ? 0 : 1));
  process.stdout.write(promqlTargets(dashboards)
    .map((t) => JSON.stringify({ dashboard: t.dashboard, panel: t.panel, ref_id: t.ref_id, expr: t.expr }) + '\n').join(''));
} else if (cmd === 'promql-rules') {
  // A Prometheus rules file (JSON is YAML) with one recording rule per expression, for promtool.
  // Named check:<dashboard>:<panel>:<refId> (slugs), so that a test can pick one by name.
  const slug = (x) => x.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_|_$/g, '');
  const rules = promqlTargets(dashboards).map((t) => ({
    record: `check:${slug(t.dashboard)}:${slug(t.panel)}:${t.ref_id}`,
    expr: substitutePromql(t.expr),
  }));
  writeFileSync(arg, JSON.stringify({ groups: [{ name: 'dashboards', rules }] }, null, 1) + '\n');
} else if (cmd === 'lint') {
  const queries = checkQueries(readJson(queriesFile));
  checkDashboards(dashboards, queries);
  checkDoc(queries);
  checkProvisioning();
  if (errors.length) {
    for (const e of errors) console.error(`FAIL ${e}`);
    console.error(`${errors.length} problem(s)`);
    process.exit(1);
  }
  const nProm = promqlTargets(dashboards).length;
  console.log(`ok: ${dashboards.length} dashboards, ${nProm} PromQL expressions, ${queries.length} LogQL queries in queries.json, all rules hold`);
} else {
  console.error('usage: node check.mjs ts-wrappers DIR | lint | promql-rules FILE | list-promql');
  process.exit(2);
}
