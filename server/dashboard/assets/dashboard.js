// rota's fleet dashboard: reads /api/devices, /api/devices/{id} and /api/rollouts, and draws them.
// Plain DOM: every text goes in through textContent, never as HTML.
'use strict';

const REFRESH_MS = 3000;
const SVG_NS = 'http://www.w3.org/2000/svg';
// One colour per boot phase (init, tick, provision, app), by phase number.
const PHASE_COLOURS = ['#5b8def', '#2e8b57', '#e39b2d', '#b03a9c', '#c0392b', '#4a5260'];

let selected = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJson(path) {
  const response = await fetch(path, { cache: 'no-store' });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(body && body.error ? body.error : `${path}: HTTP ${response.status}`);
  return body;
}

function utc(secs) {
  return new Date(secs * 1000).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
}

function outcomeClass(outcome) {
  if (outcome.startsWith('failed')) return 'bad';
  if (outcome === 'held' || outcome === 'updating') return 'warn';
  return outcome === 'updated' ? 'good' : '';
}

function renderDevices(devices) {
  const rows = devices.map((d) => {
    const row = el('tr', { 'data-testid': `device-row-${d.id}`, 'data-device': d.id, tabindex: '0' },
      el('td', { 'data-testid': 'device-id' }, String(d.id)),
      el('td', { 'data-testid': 'device-protocol' }, d.protocol === 1 ? 'luaOTA' : 'rota'),
      el('td', { 'data-testid': 'device-release' }, d.release ?? '—'),
      el('td', { 'data-testid': 'device-checkin' }, utc(d.last_check_in)),
      el('td', { 'data-testid': 'device-outcome', class: outcomeClass(d.outcome) }, d.outcome),
      el('td', { 'data-testid': 'device-rollbacks', title: d.rollbacks.last ?? '' },
        d.rollbacks.count ? `${d.rollbacks.count}: ${d.rollbacks.last ?? ''}` : '0'));
    if (d.id === selected) row.classList.add('selected');
    row.addEventListener('click', () => select(d.id));
    row.addEventListener('keydown', (e) => { if (e.key === 'Enter') select(d.id); });
    return row;
  });
  document.getElementById('devices').replaceChildren(...rows);
}

// A round number at or above `max`: 1, 2 or 5 times a power of ten.
function niceCeiling(max) {
  const power = 10 ** Math.floor(Math.log10(Math.max(max, 1)));
  for (const step of [1, 2, 5, 10]) if (step * power >= max) return step * power;
  return 10 * power;
}

// The series of the plot: for each phase, its heap peak and its stack peak, one point per boot.
function seriesOf(boots) {
  const series = new Map();
  boots.forEach((boot, index) => {
    for (const p of boot.phases) {
      for (const [metric, value] of [['heap peak', p.heap_peak], ['stack peak', p.stack_peak]]) {
        const name = `${p.name} ${metric}`;
        if (!series.has(name)) series.set(name, { name, phase: p.phase, dashed: metric === 'stack peak', points: [] });
        series.get(name).points.push({ index, value });
      }
    }
  });
  return [...series.values()];
}

function renderPlot(boots) {
  const plot = document.getElementById('plot');
  const series = seriesOf(boots);
  if (series.length === 0) {
    plot.replaceChildren(el('p', {}, 'No heap reports: this device reports no boot phases.'));
    return;
  }
  const [width, height, left, right, top, bottom] = [720, 280, 72, 16, 12, 40];
  const max = niceCeiling(Math.max(...series.flatMap((s) => s.points.map((p) => p.value))));
  const x = (i) => left + (boots.length === 1 ? (width - left - right) / 2 : (i * (width - left - right)) / (boots.length - 1));
  const y = (v) => top + (height - top - bottom) * (1 - v / max);
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'data-testid': 'plot-svg' });
  root.append(svg('title', {}, 'Heap peak and stack peak per phase, per boot (bytes)'));
  const axes = svg('g', { 'data-testid': 'plot-axes' });
  axes.append(svg('line', { x1: left, y1: top, x2: left, y2: height - bottom, stroke: '#4a5260' }));
  axes.append(svg('line', { x1: left, y1: height - bottom, x2: width - right, y2: height - bottom, stroke: '#4a5260' }));
  for (let t = 0; t <= 4; t++) {
    const value = (max * t) / 4;
    axes.append(svg('line', { x1: left - 4, y1: y(value), x2: width - right, y2: y(value), stroke: '#e2e5ea' }));
    axes.append(svg('text', { x: left - 6, y: y(value) + 4, 'text-anchor': 'end' }, value.toLocaleString('en-US')));
  }
  const labelEvery = Math.ceil(boots.length / 12);
  boots.forEach((_, i) => {
    if (i % labelEvery === 0) axes.append(svg('text', { x: x(i), y: height - bottom + 14, 'text-anchor': 'middle' }, String(i + 1)));
  });
  axes.append(svg('text', { x: 14, y: top + (height - top - bottom) / 2, 'text-anchor': 'middle',
    transform: `rotate(-90 14 ${top + (height - top - bottom) / 2})`, 'data-testid': 'plot-y-label' }, 'bytes'));
  axes.append(svg('text', { x: left + (width - left - right) / 2, y: height - 6, 'text-anchor': 'middle',
    'data-testid': 'plot-x-label' }, 'boot (oldest first)'));
  root.append(axes);
  const legend = el('div', { class: 'legend', 'data-testid': 'plot-legend' });
  for (const s of series) {
    const colour = PHASE_COLOURS[s.phase % PHASE_COLOURS.length];
    const group = svg('g', { 'data-testid': 'plot-series', 'data-series': s.name });
    group.append(svg('polyline', {
      points: s.points.map((p) => `${x(p.index)},${y(p.value)}`).join(' '),
      fill: 'none', stroke: colour, 'stroke-width': 1.5, 'stroke-dasharray': s.dashed ? '4 3' : 'none',
    }));
    for (const p of s.points) {
      const point = svg('circle', { cx: x(p.index), cy: y(p.value), r: 3, fill: colour, 'data-testid': 'plot-point' });
      point.append(svg('title', {}, `boot ${p.index + 1}, ${s.name}: ${p.value.toLocaleString('en-US')} bytes`));
      group.append(point);
    }
    root.append(group);
    const swatch = el('i', { class: s.dashed ? 'dashed' : '' });
    swatch.style.borderColor = colour;
    legend.append(el('span', {}, swatch, s.name));
  }
  plot.replaceChildren(root, legend);
}

function renderHistory(history) {
  const d = history.device;
  document.getElementById('history').hidden = false;
  document.getElementById('history-title').textContent = `Device ${d.id}: ${history.boots.length} boots`;
  const files = d.files.map((f) => `${f.name} ${f.version}`).join(', ') || 'no files';
  const signed = d.signed === null ? '' : d.signed ? ', signed releases only' : ', unsigned';
  const security = d.security_version === null ? '' : `, security version ${d.security_version}`;
  document.getElementById('history-detail').textContent =
    `${d.protocol === 1 ? 'luaOTA' : 'rota'} from ${d.peer}; ${files}${signed}${security}` +
    (d.state ? `; state ${d.state.slice(0, 16)}` : '');
  renderPlot(history.boots);
  const rows = history.boots.map((b, i) => el('tr', { 'data-testid': 'boot-row' },
    el('td', {}, String(i + 1)), el('td', {}, utc(b.time)), el('td', {}, b.nonce === null ? '—' : String(b.nonce)),
    el('td', {}, b.release ?? '—'), el('td', { class: outcomeClass(b.outcome) }, b.outcome)));
  document.getElementById('boots').replaceChildren(...rows);
}

function renderRollouts(rollouts) {
  const cards = rollouts.map((r) => {
    const p = r.progress;
    const cohort = Math.max(p.cohort, 1);
    const pending = Math.max(p.updated - p.confirmed, 0);
    const bar = el('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': String(p.cohort),
      'aria-valuenow': String(p.confirmed), 'data-testid': 'rollout-bar' });
    for (const [cls, count] of [['confirmed', p.confirmed], ['updated', pending], ['rolled-back', p.rolled_back], ['failed', p.failed]]) {
      const segment = el('span', { class: cls, 'data-testid': `bar-${cls}` });
      segment.style.width = `${(100 * count) / cohort}%`;
      bar.append(segment);
    }
    const target = r.steps[r.current_step];
    if (target !== undefined) {
      const marker = el('span', { class: 'target', title: `step target: ${target}%` });
      marker.style.left = `${target}%`;
      bar.append(marker);
    }
    const steps = el('span', { class: 'steps', 'data-testid': 'rollout-steps' });
    r.steps.forEach((s, i) => {
      if (i) steps.append(' → ');
      steps.append(i === r.current_step ? el('b', {}, `${s}%`) : `${s}%`);
    });
    const statusClass = r.status.startsWith('halted') ? 'bad' : r.status === 'done' ? 'good' : '';
    const count = (name, label, value) => el('span', {}, `${label} `, el('b', { 'data-testid': `progress-${name}` }, String(value)));
    return el('div', { class: 'rollout', 'data-testid': `rollout-${r.id}`, 'data-rollout': r.id },
      el('div', {}, el('b', {}, `#${r.id} ${r.release}`), ` to ${r.cohort}, steps `, steps, ' ',
        el('span', { class: statusClass, 'data-testid': 'rollout-status' }, r.status)),
      bar,
      el('div', { class: 'counts' }, count('cohort', 'cohort', p.cohort), count('updated', 'updated', p.updated),
        count('confirmed', 'confirmed', p.confirmed), count('rolled-back', 'rolled back', p.rolled_back),
        count('failed', 'failed', p.failed)));
  });
  document.getElementById('rollouts').replaceChildren(...(cards.length ? cards : [el('p', {}, 'No rollouts.')]));
}

function setStatus(error) {
  const status = document.getElementById('status');
  status.classList.toggle('error', Boolean(error));
  status.textContent = error ? `error: ${error.message}` : `updated ${new Date().toLocaleTimeString()}`;
}

async function select(id) {
  selected = id;
  for (const row of document.querySelectorAll('#devices tr')) row.classList.toggle('selected', row.dataset.device === String(id));
  try {
    renderHistory(await getJson(`/api/devices/${id}`));
  } catch (error) {
    setStatus(error);
  }
}

async function refresh() {
  try {
    const [devices, rollouts] = await Promise.all([getJson('/api/devices'), getJson('/api/rollouts')]);
    renderDevices(devices);
    renderRollouts(rollouts);
    if (selected !== null) renderHistory(await getJson(`/api/devices/${selected}`));
    setStatus(null);
  } catch (error) {
    setStatus(error);
  }
  setTimeout(refresh, REFRESH_MS);
}

refresh();
