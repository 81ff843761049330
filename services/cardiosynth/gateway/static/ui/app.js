// The cardiosynth web page: sign in, submit a job, follow the jobs, look at the results.
//
// It talks to the same API as every other client. The API key lives in this tab's sessionStorage and
// travels only in the X-API-Key header: never in an address (addresses end up in logs and history).
// No inline script or handler anywhere: the page's CSP allows scripts from this origin only.

import { Viewer, clearCache, fetchVolume } from "./viewer.js";

const KEY = "cardiosynth.apiKey";
const POLL_LIVE_MS = 1000; // while a live job (queued or running) has no event stream
const POLL_IDLE_MS = 10000; // otherwise: new jobs from elsewhere, expiries
const MAX_STREAMS = 3; // a browser holds about 6 connections per host: leave room for the rest
const el = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && problem.detail) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json, application/problem+json" };
  const key = sessionStorage.getItem(KEY);
  if (key) headers["X-API-Key"] = key;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, { title: "No answer", detail: "the service did not answer (is it running?)" });
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { detail: text.slice(0, 300) };
    }
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function describe(err) {
  if (!(err instanceof ApiError)) return String(err && err.message ? err.message : err);
  const p = err.problem;
  const head = err.status ? `${err.status} ${p.title || ""}`.trim() : p.title || "Error";
  return p.detail ? `${head}: ${p.detail}` : head;
}

// ------------------------------------------------------------------------------------- small DOM

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

const fmt = (v, digits = 1) => (typeof v === "number" && Number.isFinite(v) ? v.toFixed(digits) : "–");
const shortId = (id) => id.slice(0, 8);

// ------------------------------------------------------------------------------------------ sign in

const UNAUTHORIZED =
  "The service did not accept this API key (401). Use the key that `cardiosynth up` printed, " +
  "or one of the gateway's CARDIOSYNTH_API_KEYS.";

async function signIn(event) {
  event.preventDefault();
  const input = el("api-key");
  const error = el("api-key-error");
  const key = input.value.trim();
  error.textContent = "";
  input.removeAttribute("aria-invalid");
  if (!key) {
    error.textContent = "Enter an API key.";
    input.setAttribute("aria-invalid", "true");
    input.focus();
    return;
  }
  el("sign-in").disabled = true;
  sessionStorage.setItem(KEY, key);
  try {
    await api("GET", "/jobs?limit=1"); // the cheapest call that checks the key
    input.value = ""; // the page keeps the key in sessionStorage only, not in the form
    await enter();
  } catch (err) {
    sessionStorage.removeItem(KEY);
    error.textContent = err.status === 401 ? UNAUTHORIZED : `Could not sign in: ${describe(err)}`;
    input.setAttribute("aria-invalid", "true");
    input.focus();
  } finally {
    el("sign-in").disabled = false;
  }
}

function signOut(message = "") {
  sessionStorage.removeItem(KEY);
  clearTimeout(poll.timer);
  poll.timer = null;
  stopStreams();
  jobs.clear();
  el("job-list").replaceChildren();
  closeResults();
  clearCache();
  el("app").hidden = true;
  el("session").hidden = true;
  el("signin").hidden = false;
  el("api-key-error").textContent = message;
  el("api-key").focus();
}

let formReady = false;

async function enter() {
  el("signin").hidden = true;
  el("app").hidden = false;
  el("session").hidden = false;
  if (!formReady) {
    try {
      await setUpForm();
      formReady = true;
      el("submit-job").disabled = false; // disabled in the HTML until the form knows the API's rules
    } catch (err) {
      el("err-form").textContent = `Could not load the form's choices: ${describe(err)}`;
    }
  }
  await refreshJobs();
  el("f-pathology").focus();
}

// -------------------------------------------------------------------------------------- the form

// The request's rules come from the API's own OpenAPI document, so the form checks what the API
// checks (bounds, choices) without a second copy of them here.
const rules = {};

function resolve(schema, schemas) {
  if (!schema) return {};
  if (schema.$ref) return resolve(schemas[schema.$ref.split("/").pop()], schemas);
  if (schema.allOf) return Object.assign({}, ...schema.allOf.map((s) => resolve(s, schemas)), strip(schema));
  if (schema.anyOf) {
    const options = schema.anyOf.filter((s) => s.type !== "null").map((s) => resolve(s, schemas));
    return Object.assign({}, ...options, strip(schema), { nullable: options.length < schema.anyOf.length });
  }
  return schema;
}

function strip(schema) {
  const { allOf, anyOf, $ref, ...rest } = schema;
  return rest;
}

function bounds(schema) {
  return {
    min: schema.minimum,
    exMin: schema.exclusiveMinimum,
    max: schema.maximum,
    exMax: schema.exclusiveMaximum,
    integer: schema.type === "integer",
  };
}

function numberProblem(raw, b, what) {
  if (raw === "") return `${what} is required`;
  const v = Number(raw);
  if (!Number.isFinite(v)) return `${what} must be a number`;
  if (b.integer && !Number.isInteger(v)) return `${what} must be a whole number`;
  if (b.min !== undefined && v < b.min) return `${what} must be at least ${b.min}`;
  if (b.exMin !== undefined && v <= b.exMin) return `${what} must be greater than ${b.exMin}`;
  if (b.max !== undefined && v > b.max) return `${what} must be at most ${b.max}`;
  if (b.exMax !== undefined && v >= b.exMax) return `${what} must be less than ${b.exMax}`;
  return null;
}

function fillSelect(select, values, labels = {}, chosen) {
  select.replaceChildren(
    ...values.map((v) => h("option", { value: v, text: labels[v] ? `${v}: ${labels[v]}` : v, selected: v === chosen })),
  );
}

async function setUpForm() {
  const [spec, pathologies, models] = await Promise.all([
    api("GET", "/openapi.json"),
    api("GET", "/pathologies"),
    api("GET", "/models"),
  ]);
  const schemas = spec.components.schemas;
  const props = schemas.SynthesizeRequest.properties;
  for (const [name, schema] of Object.entries(props)) rules[name] = resolve(schema, schemas);

  const pathology = el("f-pathology");
  fillSelect(pathology, Object.keys(pathologies), {}, "HCM");
  pathology.addEventListener("change", () => {
    el("f-pathology-help").textContent = pathologies[pathology.value] || "";
    el("territory-field").hidden = pathology.value !== "MINF";
  });
  pathology.dispatchEvent(new Event("change"));

  for (const name of ["n", "seed", "severity", "trajectory"]) {
    const b = bounds(rules[name]);
    const input = el(`f-${name}`);
    if (b.min !== undefined) input.min = b.min;
    if (b.max !== undefined) input.max = b.max;
    if (b.exMax !== undefined && b.integer) input.max = b.exMax - 1;
  }
  fillSelect(el("f-correlation"), rules.correlation.enum || [], {}, rules.correlation.default);
  el("f-correlation").title = rules.correlation.description || "";
  fillSelect(el("f-interpolation"), rules.interpolation.enum || [], {}, rules.interpolation.default);
  el("f-interpolation").title = rules.interpolation.description || "";
  for (const t of rules.territory.enum || []) el("f-territory").append(h("option", { value: t, text: t }));

  // A model version is usable when both halves (VAE and SPADE) are installed.
  const kinds = {};
  for (const m of models) (kinds[m.version] ||= new Set()).add(m.kind);
  const usable = Object.keys(kinds).filter((v) => kinds[v].has("vae") && kinds[v].has("spade"));
  fillSelect(el("f-model"), usable.length ? usable : [rules.model.default], {}, rules.model.default);

  for (const radio of document.querySelectorAll('input[name="severity-mode"]')) {
    radio.addEventListener("change", () => {
      const trajectory = el("f-mode-trajectory").checked;
      el("severity-field").hidden = trajectory;
      el("trajectory-field").hidden = !trajectory;
    });
  }
}

const FIELDS = [
  "pathology", "n", "seed", "severity", "trajectory", "phases", "territory", "correlation", "interpolation", "model",
  "include_base",
];

function fieldInput(field) {
  if (field === "phases") return el("f-phase-ed");
  return el(`f-${field}`);
}

function clearErrors() {
  for (const f of FIELDS) {
    el(`err-${f}`).textContent = "";
    fieldInput(f)?.removeAttribute("aria-invalid");
  }
  el("err-form").textContent = "";
}

function showErrors(errors, formMessage) {
  let first = null;
  for (const { field, message } of errors) {
    const name = String(field).split(".")[0];
    if (FIELDS.includes(name)) {
      const slot = el(`err-${name}`);
      slot.textContent = slot.textContent ? `${slot.textContent}; ${message}` : message;
      const input = fieldInput(name);
      input.setAttribute("aria-invalid", "true");
      first ||= input;
    } else {
      el("err-form").textContent += (el("err-form").textContent ? "; " : "") + message;
    }
  }
  if (formMessage) el("err-form").textContent = formMessage;
  (first || el("submit-job")).focus();
}

function readForm() {
  const errors = [];
  const body = { pathology: el("f-pathology").value };
  if (rules.pathology.enum && !rules.pathology.enum.includes(body.pathology)) {
    errors.push({ field: "pathology", message: "choose a pathology" });
  }
  for (const [name, what] of [["n", "n"], ["seed", "the seed"]]) {
    const raw = el(`f-${name}`).value.trim();
    const problem = numberProblem(raw, bounds(rules[name]), what);
    if (problem) errors.push({ field: name, message: problem });
    else body[name] = Number(raw);
  }
  const mode = el("f-mode-trajectory").checked ? "trajectory" : "severity";
  const raw = el(`f-${mode}`).value.trim();
  const problem = numberProblem(raw, bounds(rules[mode]), mode === "trajectory" ? "the number of steps" : "the severity");
  if (problem) errors.push({ field: mode, message: problem });
  else body[mode] = Number(raw);
  body.phases = [...document.querySelectorAll('input[name="phases"]:checked')].map((c) => c.value);
  if (body.phases.length === 0) errors.push({ field: "phases", message: "choose at least one phase" });
  if (body.pathology === "MINF" && el("f-territory").value) body.territory = el("f-territory").value;
  body.correlation = el("f-correlation").value;
  body.interpolation = el("f-interpolation").value;
  body.model = el("f-model").value;
  // The base NOR subject's volumes, for the viewer's side by side (the API stores them on request only).
  if (rules.include_base) body.include_base = el("f-include_base").checked;
  return { body, errors };
}

async function submitJob(event) {
  event.preventDefault();
  clearErrors();
  el("submit-status").textContent = "";
  const { body, errors } = readForm();
  if (errors.length) {
    showErrors(errors);
    return;
  }
  const button = el("submit-job");
  button.disabled = true;
  try {
    const job = await api("POST", "/synthesize", body);
    el("submit-status").textContent = `Job ${shortId(job.id)} accepted (${job.state}).`;
    upsertJob(job, true);
    jobs.get(job.id).node.scrollIntoView({ block: "nearest" }); // its live progress, on a small screen too
    refreshJobs(); // the list's count and order at once; it polls quickly from here while the job is live
  } catch (err) {
    if (err.status === 401) return signOut(UNAUTHORIZED);
    // problem+json: errors name their field; the rest (quota, queue cap, outage) goes to the form.
    const fieldErrors = Array.isArray(err.problem.errors) ? err.problem.errors : [];
    if (fieldErrors.length) showErrors(fieldErrors);
    else showErrors([], describe(err));
  } finally {
    button.disabled = false;
  }
}

// -------------------------------------------------------------------------------------- the jobs

const jobs = new Map(); // id -> { job, node, parts }
const poll = { timer: null };
const LIVE = new Set(["queued", "running"]);

const isDataset = (job) => job.kind === "dataset" || job.request?.kind === "dataset";

function summary(request) {
  // A dataset build (POST /datasets) is listed with the key's jobs; its files are an archive.
  if (request.kind === "dataset") return `Dataset build (${request.format || "files"})`;
  const sev = request.trajectory ? `trajectory of ${request.trajectory}` : `severity ${fmt(request.severity ?? 1, 2)}`;
  return `${request.pathology} × ${request.n}, ${sev}`;
}

function makeJobNode(job) {
  const state = h("span", { class: "state" });
  const stages = h("div", { class: "stages" });
  const error = h("p", { class: "job-error" });
  const open = h("button", { type: "button", class: "small", text: "Open results" });
  const cancel = h("button", { type: "button", class: "small danger", text: "Cancel" });
  open.addEventListener("click", () => openResults(job.id));
  cancel.addEventListener("click", () => cancelJob(job.id));
  const when = new Date(job.created * 1000);
  const node = h(
    "li",
    { class: "job", "data-job": job.id, "aria-label": `job ${shortId(job.id)}` },
    h(
      "div",
      { class: "job-head" },
      state,
      h("span", { class: "job-what", text: summary(job.request) }),
      h("span", { class: "job-id", title: job.id, text: shortId(job.id) }),
      h("time", { class: "job-when", datetime: when.toISOString(), text: when.toLocaleTimeString() }),
    ),
    stages,
    error,
    h("div", { class: "job-actions" }, open, cancel),
  );
  return { node, parts: { state, stages, error, open, cancel } };
}

function updateJobNode(entry, job) {
  const { parts } = entry;
  let text = job.state;
  if (job.state === "queued" && job.queue_position !== null && job.queue_position !== undefined) {
    text += ` (#${job.queue_position + 1} in line)`;
  }
  if (job.expired) text += " (files expired)";
  parts.state.textContent = text;
  parts.state.className = `state ${job.state}`;
  // Per-stage progress, in place (rebuilding the list would move the keyboard focus).
  const rows = [];
  for (const [stage, p] of Object.entries(job.progress || {})) {
    const bar = h("progress", { max: p.total || 1, value: p.done, "aria-label": `${stage} progress` });
    rows.push(h("span", { text: stage }), bar, h("span", { text: `${p.done}/${p.total}` }));
  }
  const signature = JSON.stringify(job.progress || {});
  if (parts.stages.dataset.signature !== signature) {
    parts.stages.replaceChildren(...rows);
    parts.stages.dataset.signature = signature;
  }
  parts.error.textContent = job.error ? job.error.detail || job.error.title : "";
  const focused = entry.node.contains(document.activeElement) ? document.activeElement : null;
  parts.open.hidden = !(job.state === "succeeded" && !job.expired && !isDataset(job));
  parts.cancel.hidden = !LIVE.has(job.state);
  if (focused && focused.hidden) (parts.open.hidden ? el("refresh-jobs") : parts.open).focus();
  entry.job = job;
}

function upsertJob(job, first = false) {
  let entry = jobs.get(job.id);
  if (!entry) {
    entry = makeJobNode(job);
    jobs.set(job.id, entry);
    const list = el("job-list");
    if (first) list.prepend(entry.node);
    else list.append(entry.node);
  }
  updateJobNode(entry, job);
  watch(job);
}

async function refreshJobs() {
  try {
    const page = await api("GET", "/jobs?limit=20");
    if (!sessionStorage.getItem(KEY)) return; // signed out while the answer was on its way
    const seen = new Set(page.items.map((j) => j.id));
    // Newest first, as the API lists them; nodes already shown stay where they are.
    const list = el("job-list");
    page.items.forEach((job, i) => {
      const known = jobs.has(job.id);
      upsertJob(job);
      if (!known) list.insertBefore(jobs.get(job.id).node, list.children[i] || null);
    });
    for (const [id, entry] of jobs) {
      if (!seen.has(id)) {
        entry.node.remove();
        jobs.delete(id);
      }
    }
    const more = page.total > page.items.length ? ` (the newest ${page.items.length} shown)` : "";
    el("jobs-status").textContent = page.total ? `${page.total} job(s)${more}` : "No jobs yet.";
  } catch (err) {
    if (err.status === 401) return signOut(UNAUTHORIZED);
    el("jobs-status").textContent = `Could not list the jobs: ${describe(err)}`;
  }
  // Quick polls only for a live job that no event stream follows (streams unavailable, or too many).
  const unwatched = [...jobs.values()].some((e) => LIVE.has(e.job.state) && !streams.has(e.job.id));
  schedulePoll(unwatched ? POLL_LIVE_MS : POLL_IDLE_MS);
}

function schedulePoll(ms) {
  clearTimeout(poll.timer);
  // Nothing to poll for when signed out; a hidden tab waits for visibilitychange to catch up.
  if (!sessionStorage.getItem(KEY) || document.hidden) return;
  poll.timer = setTimeout(refreshJobs, ms);
}

// ------------------------------------------------------------------ live updates: the event stream

// GET /jobs/{id}/events (Server-Sent Events) sends every change of a live job and ends after its last
// state. It is read with fetch, not EventSource: an EventSource cannot send the X-API-Key header, and
// the key never goes into an address. Where the stream is not to be had (a gateway without it, a
// proxy that refuses it), the page polls the list instead, as it did before the stream existed.
const streams = new Map(); // job id -> AbortController
const sse = { unavailable: false };

function watch(job) {
  if (sse.unavailable || !LIVE.has(job.state) || streams.has(job.id)) return;
  if (streams.size >= MAX_STREAMS || !sessionStorage.getItem(KEY)) return;
  const controller = new AbortController();
  streams.set(job.id, controller);
  followJob(job.id, controller.signal)
    .catch((err) => {
      if (controller.signal.aborted) return;
      if (err.status === 401) return signOut(UNAUTHORIZED);
      sse.unavailable = true; // from now on the list is polled
      console.warn(`job events unavailable (${describe(err)}): polling instead`);
    })
    .finally(() => {
      if (streams.get(job.id) !== controller) return;
      streams.delete(job.id);
      if (!controller.signal.aborted) refreshJobs(); // its end (the list's count), or the fallback
    });
}

function stopStreams() {
  for (const controller of streams.values()) controller.abort();
  streams.clear();
  sse.unavailable = false;
}

async function followJob(id, signal) {
  let lastId = null;
  let retryMs = 2000;
  for (;;) {
    const headers = { Accept: "text/event-stream", "X-API-Key": sessionStorage.getItem(KEY) || "" };
    if (lastId) headers["Last-Event-ID"] = lastId; // resume: what the page has is not sent again
    let response;
    try {
      response = await fetch(`/jobs/${encodeURIComponent(id)}/events`, { headers, signal, cache: "no-store" });
    } catch (err) {
      if (signal.aborted) return;
      throw new ApiError(0, { title: "No answer", detail: String(err) });
    }
    if (response.status === 204) return; // it ended in the version the page holds
    const type = response.headers.get("content-type") || "";
    if (!response.ok || !type.startsWith("text/event-stream")) {
      throw new ApiError(response.status, { title: `HTTP ${response.status}`, detail: type || "no body" });
    }
    let ended = false;
    for await (const event of serverEvents(response.body)) {
      if (event.retry !== null) retryMs = event.retry;
      if (event.id) lastId = event.id;
      if (!event.data || signal.aborted || !sessionStorage.getItem(KEY)) continue;
      const job = JSON.parse(event.data);
      upsertJob(job);
      ended = !LIVE.has(job.state);
    }
    if (ended || signal.aborted) return;
    // The stream stopped with the job still live (its longest time, a restart): resume it.
    await new Promise((done) => setTimeout(done, retryMs));
  }
}

// The events of a text/event-stream body: { id, data, retry } per blank-line-terminated block.
async function* serverEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = { id: null, data: null, retry: null };
        const data = [];
        for (const line of block.split("\n")) {
          if (!line || line.startsWith(":")) continue; // a comment: the keep-alive
          const colon = line.indexOf(":");
          const name = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (name === "data") data.push(text);
          else if (name === "id") event.id = text;
          else if (name === "retry" && /^\d+$/.test(text)) event.retry = Number(text);
        }
        if (data.length) event.data = data.join("\n");
        if (event.data !== null || event.id !== null || event.retry !== null) yield event;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

async function cancelJob(id) {
  if (!window.confirm(`Cancel job ${shortId(id)}? What it stored so far is deleted.`)) return;
  try {
    const job = await api("DELETE", `/jobs/${encodeURIComponent(id)}`);
    upsertJob(job);
    el("jobs-status").textContent = `Job ${shortId(id)} cancelled.`;
  } catch (err) {
    if (err.status === 401) return signOut(UNAUTHORIZED);
    el("jobs-status").textContent = `Could not cancel ${shortId(id)}: ${describe(err)}`;
  }
}

// ----------------------------------------------------------------------------------- the results

// The biomarkers shown (cardiosynth.data.biomarkers.Biomarkers), with their units.
const BIOMARKERS = [
  ["lv_edv", "LVEDV", "ml"],
  ["lv_esv", "LVESV", "ml"],
  ["lv_ef", "LVEF", "%"],
  ["rv_edv", "RVEDV", "ml"],
  ["rv_esv", "RVESV", "ml"],
  ["rv_ef", "RVEF", "%"],
  ["myo_mass", "Myo mass", "g"],
  ["max_wall_thickness", "Max wall", "mm"],
  ["thick_segments", "Thick segments", ""],
  ["hypokinetic_sectors", "Hypokinetic sectors", ""],
];

const view = {
  job: null, // the job whose results are open
  results: null,
  fetchedAt: 0,
  subjects: new Map(), // name -> { severities, phases, volumes: sev -> phase -> {image,label}, base, provenance, preview }
  provenance: new Map(), // subject -> provenance.json (diagnosis, base subject)
  main: null,
  other: null,
};

function group(files) {
  const subjects = new Map();
  for (const f of files) {
    if (!subjects.has(f.subject)) {
      subjects.set(f.subject, { volumes: new Map(), base: new Map(), files: [], provenance: null, preview: null });
    }
    const s = subjects.get(f.subject);
    s.files.push(f);
    if (f.kind === "image" || f.kind === "label") {
      if (!s.volumes.has(f.severity)) s.volumes.set(f.severity, new Map());
      const byPhase = s.volumes.get(f.severity);
      if (!byPhase.has(f.phase)) byPhase.set(f.phase, {});
      byPhase.get(f.phase)[f.kind] = f;
    } else if (f.kind === "base_image" || f.kind === "base_label") {
      if (!s.base.has(f.phase)) s.base.set(f.phase, {});
      s.base.get(f.phase)[f.kind === "base_image" ? "image" : "label"] = f;
    } else if (f.kind === "provenance") s.provenance = f;
    else if (f.kind === "preview") s.preview = f;
  }
  for (const s of subjects.values()) {
    s.severities = [...s.volumes.keys()].sort((a, b) => Number(a) - Number(b));
    const phases = new Set();
    for (const byPhase of s.volumes.values()) for (const p of byPhase.keys()) phases.add(p);
    s.phases = ["ED", "ES"].filter((p) => phases.has(p));
  }
  return subjects;
}

function closeResults() {
  view.job = null;
  view.results = null;
  el("results-body").hidden = true;
  el("results-empty").hidden = false;
  el("results-error").textContent = "";
  el("results-title").textContent = "Results";
  for (const entry of jobs.values()) entry.node.classList.remove("selected");
}

async function loadResults(id) {
  view.results = await api("GET", `/jobs/${encodeURIComponent(id)}/results`);
  view.fetchedAt = Date.now();
  view.subjects = group(view.results.files);
}

// Signed links expire (expires_in): ask for fresh ones shortly before, instead of failing a load.
async function freshLinks() {
  const ttl = Math.min(...view.results.files.map((f) => f.expires_in), 3600) * 1000;
  if (Date.now() - view.fetchedAt > ttl - 60000) await loadResults(view.job.id);
}

async function openResults(id) {
  const entry = jobs.get(id);
  for (const e of jobs.values()) e.node.classList.toggle("selected", e === entry);
  el("results-error").textContent = "";
  el("results-empty").hidden = true;
  try {
    view.job = entry ? entry.job : await api("GET", `/jobs/${encodeURIComponent(id)}`);
    view.provenance = new Map();
    await loadResults(id);
  } catch (err) {
    if (err.status === 401) return signOut(UNAUTHORIZED);
    el("results-error").textContent = `Could not open the results of ${shortId(id)}: ${describe(err)}`;
    return;
  }
  el("results-title").textContent = `Results of job ${shortId(id)}: ${summary(view.job.request)}`;
  const select = el("v-subject");
  select.replaceChildren(...[...view.subjects.keys()].sort().map((s) => h("option", { value: s, text: s })));
  el("results-body").hidden = false;
  el("results-title").focus();
  if (!view.main) {
    try {
      view.main = await Viewer.create(el("v-main"), onLocation);
      view.other = await Viewer.create(el("v-other"), onLocation);
    } catch (err) {
      view.main = view.other = null;
      el("v-status").textContent = `The volume viewer could not start: ${err.message || err}`;
    }
  }
  await selectSubject();
}

async function selectSubject() {
  const name = el("v-subject").value;
  const s = view.subjects.get(name);
  if (!s) return;
  // Phase radios and the severity slider follow the subject's files.
  const phases = el("v-phases");
  const chosen = document.querySelector('input[name="v-phase"]:checked')?.value;
  phases.replaceChildren(
    ...s.phases.map((p) =>
      h("label", {}, h("input", { type: "radio", name: "v-phase", value: p, checked: p === (s.phases.includes(chosen) ? chosen : s.phases[0]) }), ` ${p}`),
    ),
  );
  for (const radio of phases.querySelectorAll("input")) radio.addEventListener("change", () => show());
  const slider = el("v-severity");
  slider.max = String(s.severities.length - 1);
  slider.value = String(s.severities.length - 1);
  slider.disabled = s.severities.length < 2;
  const compare = el("v-compare");
  const options = [h("option", { value: "none", text: "nothing" })];
  if (s.base.size) options.push(h("option", { value: "base", text: "base NOR subject" }));
  if (s.phases.length > 1) options.push(h("option", { value: "phase", text: "the other phase" }));
  for (const sev of s.severities) options.push(h("option", { value: `sev:${sev}`, text: `severity ${sev}` }));
  compare.replaceChildren(...options);
  compare.value = s.base.size ? "base" : s.severities.length > 1 ? `sev:${s.severities[0]}` : s.phases.length > 1 ? "phase" : "none";
  el("v-compare-help").textContent = s.base.size
    ? "Same slice, phase, zoom and grey levels (the base subject's window) in both panels."
    : "This job did not store its base subject (Store the base NOR subject): the preview below shows it.";
  renderDownloads(s);
  renderPreview(s);
  await Promise.all([renderBiomarkers(name, s), show({ recentre: true })]);
}

function currentSelection() {
  const s = view.subjects.get(el("v-subject").value);
  const phase = document.querySelector('input[name="v-phase"]:checked')?.value || s.phases[0];
  const severity = s.severities[Number(el("v-severity").value)] ?? s.severities.at(-1);
  return { s, phase, severity };
}

function compareTarget(s, phase, severity) {
  const choice = el("v-compare").value;
  if (choice === "base") {
    const base = s.base.get(phase);
    return base ? { files: base, base: true, caption: () => baseCaption(phase) } : null;
  }
  if (choice === "phase") {
    const other = s.phases.find((p) => p !== phase);
    const files = s.volumes.get(severity)?.get(other);
    return files ? { files, caption: () => `Synthetic, severity ${severity}, ${other}` } : null;
  }
  if (choice.startsWith("sev:")) {
    const sev = choice.slice(4);
    const files = s.volumes.get(sev)?.get(phase);
    return files ? { files, caption: () => `Synthetic, severity ${sev}, ${phase}` } : null;
  }
  return null;
}

// The base subject's id comes with its provenance, which may arrive after the volumes.
function baseCaption(phase) {
  const id = view.provenance.get(el("v-subject").value)?.base_subject;
  return `Base NOR subject${id ? ` ${id}` : ""}, ${phase}`;
}

let showing = 0; // the newest show() call wins when the user moves faster than the files load

async function show({ recentre = false } = {}) {
  if (!view.main) return;
  const call = ++showing;
  // "loading" until this call has drawn: what a test (or an assistive tool) can wait for.
  el("v-main").dataset.state = "loading";
  const { s, phase, severity } = currentSelection();
  const index = s.severities.indexOf(severity);
  el("v-severity-out").textContent = `${severity} (${index + 1} of ${s.severities.length})`;
  el("v-severity").setAttribute("aria-valuetext", `severity ${severity}`);
  const files = s.volumes.get(severity)?.get(phase);
  const target = compareTarget(s, phase, severity);
  el("v-main-caption").textContent = `Synthetic ${el("v-subject").value}, severity ${severity}, ${phase}`;
  el("v-status").textContent = "Loading volumes…";
  highlightColumn(severity);
  try {
    await freshLinks();
    const load = (f) => (f ? fetchVolume(f.key, currentUrl(f)) : Promise.resolve(null));
    const [image, label, otherImage, otherLabel] = await Promise.all([
      load(files?.image),
      load(files?.label),
      load(target?.files.image),
      load(target?.files.label),
    ]);
    if (call !== showing) return;
    const keepSlice = recentre ? null : view.main.slice();
    el("v-other-figure").hidden = !target;
    if (target) el("v-other-caption").textContent = target.caption();
    // One grey-level window for both panels, so that brightness compares: the base subject's own
    // (the scanner's image, whose scale the synthetic image is on) when it is shown, else the
    // synthetic panel's.
    if (target?.base) {
      await view.other.show(otherImage, otherLabel, target.files.image.key);
      await view.main.show(image, label, files.image.key, view.other.window());
    } else {
      await view.main.show(image, label, files.image.key);
      if (target) await view.other.show(otherImage, otherLabel, target.files.image.key, view.main.window());
    }
    const slider = el("v-slice");
    slider.max = String(view.main.sliceCount() - 1);
    setSlice(keepSlice ?? view.main.middleSlice());
    applyZoom();
    applyOverlay();
    el("v-status").textContent = "";
    el("v-main").dataset.state = "ready";
  } catch (err) {
    if (call !== showing) return;
    if (err.status === 401) return signOut(UNAUTHORIZED);
    el("v-status").textContent = `Could not show the volumes: ${err.message || err}`;
    el("v-main").dataset.state = "error";
  }
}

function currentUrl(file) {
  // After freshLinks() the same key may have a newer signed link.
  const fresh = view.results.files.find((f) => f.key === file.key);
  return (fresh || file).url;
}

function setSlice(k) {
  if (!view.main) return;
  const count = view.main.sliceCount();
  const slice = Math.max(0, Math.min(count - 1, Math.round(k)));
  el("v-slice").value = String(slice);
  el("v-slice-out").textContent = `${slice + 1} of ${count}`;
  el("v-slice").setAttribute("aria-valuetext", `slice ${slice + 1} of ${count}`);
  view.main.setSlice(slice);
  if (!el("v-other-figure").hidden) view.other.setSlice(slice);
}

function applyZoom() {
  const zoom = Number(el("v-zoom").value);
  el("v-zoom-out").textContent = `${zoom}×`;
  view.main?.setZoom(zoom);
  // The same field of view in both (the panels show volumes of one grid: the base subject's).
  if (!el("v-other-figure").hidden) view.other?.setZoom(zoom, view.main?.centre);
}

function applyOverlay() {
  const on = el("v-overlay").checked;
  const opacity = Number(el("v-opacity").value);
  el("v-opacity-out").textContent = opacity.toFixed(2);
  el("v-opacity").disabled = !on;
  for (const v of [view.main, view.other]) v?.setOverlay(on ? opacity : 0);
}

const LABEL_NAMES = ["background", "RV cavity", "LV myocardium", "LV cavity"];

function onLocation(viewer, where) {
  // Either panel may move the slice (a click, the mouse wheel): the other follows.
  if (where.slice !== Number(el("v-slice").value)) setSlice(where.slice);
  const label = where.label === null ? "" : `, ${LABEL_NAMES[where.label] ?? `label ${where.label}`}`;
  el("v-location").textContent = `voxel (${where.vox.join(", ")}): ${fmt(where.value, 1)}${label}`;
}

function highlightColumn(severity) {
  for (const cell of document.querySelectorAll("#biomarkers [data-severity]")) {
    cell.classList.toggle("current", cell.dataset.severity === severity);
  }
}

async function provenanceOf(name, s) {
  if (view.provenance.has(name)) return view.provenance.get(name);
  if (!s.provenance) return null;
  try {
    await freshLinks();
    const response = await fetch(currentUrl(s.provenance), { credentials: "omit", referrerPolicy: "no-referrer" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const record = await response.json();
    view.provenance.set(name, record);
    return record;
  } catch (err) {
    el("results-error").textContent = `Could not read ${name}'s provenance (rule diagnosis): ${err.message || err}`;
    return null;
  }
}

// One column per severity, one row per biomarker: along a trajectory the figures read left to right.
async function renderBiomarkers(name, s) {
  const table = el("biomarkers");
  const byName = view.results.biomarkers[name] || {};
  const record = await provenanceOf(name, s);
  if (name !== el("v-subject").value) return;
  table.tHead.replaceChildren(
    h(
      "tr",
      {},
      h("th", { scope: "col", text: "Severity" }),
      ...s.severities.map((sev) => h("th", { scope: "col", "data-severity": sev, text: sev })),
    ),
  );
  const rows = BIOMARKERS.map(([key, title, unit]) =>
    h(
      "tr",
      { "data-key": key },
      h("th", { scope: "row", text: unit ? `${title} (${unit})` : title }),
      ...s.severities.map((sev) => {
        const b = byName[sev];
        if (!b) return h("td", { "data-severity": sev, title: "one phase only: no biomarkers", text: "–" });
        const v = b[key];
        const text = Number.isInteger(v) ? String(v) : fmt(v);
        return h("td", { "data-severity": sev, "data-key": key, "data-value": v, text });
      }),
    ),
  );
  rows.push(
    h(
      "tr",
      { "data-key": "diagnosis" },
      h("th", { scope: "row", text: "Rule diagnosis" }),
      ...s.severities.map((sev) => {
        const d = record?.diagnosis?.[sev];
        return h(
          "td",
          { class: "diagnosis", "data-severity": sev, "data-key": "diagnosis" },
          h("strong", { text: d ? d.group ?? "no rule outcome" : "–" }),
          d && d.reasons?.length ? h("span", { class: "reasons", text: d.reasons.join("; ") }) : null,
        );
      }),
    ),
  );
  table.tBodies[0].replaceChildren(...rows);
  el("v-base").textContent = record ? `from ${record.base_subject}${record.base_group ? ` (${record.base_group})` : ""}` : "";
  if (record && el("v-compare").value === "base") el("v-other-caption").textContent = baseCaption(currentSelection().phase);
  highlightColumn(currentSelection().severity);
}

// The worker's preview PNG (base subject and every severity side by side, mid slice) through its
// signed link: a job that did not store the base subject's volumes (include_base) shows it only here.
function renderPreview(s) {
  el("preview-figure").hidden = !s.preview;
  if (s.preview) el("preview").src = currentUrl(s.preview);
  else el("preview").removeAttribute("src");
}

const KIND_NAMES = { base_image: "base NOR subject's image", base_label: "base NOR subject's labels" };

function renderDownloads(s) {
  const items = [...s.files]
    .sort((a, b) => a.key.localeCompare(b.key))
    .map((f) => {
      const file = f.key.split("/").pop();
      const what = [KIND_NAMES[f.kind] || f.kind, f.phase, f.severity ? `severity ${f.severity}` : null]
        .filter(Boolean)
        .join(", ");
      // The signed link exactly as the API gave it; `download` keeps the file's own name.
      return h("li", {}, h("a", { href: f.url, download: file, text: file }), " ", h("span", { class: "what", text: `(${what})` }));
    });
  el("downloads").replaceChildren(...items);
}

// ------------------------------------------------------------------------------------------ start

function wire() {
  el("signin-form").addEventListener("submit", signIn);
  el("sign-out").addEventListener("click", () => signOut());
  el("job-form").addEventListener("submit", submitJob);
  el("refresh-jobs").addEventListener("click", () => refreshJobs());
  el("v-subject").addEventListener("change", () => selectSubject());
  el("v-severity").addEventListener("input", () => show());
  el("v-compare").addEventListener("change", () => show());
  el("v-slice").addEventListener("input", () => setSlice(Number(el("v-slice").value)));
  el("v-zoom").addEventListener("input", applyZoom);
  el("v-overlay").addEventListener("change", applyOverlay);
  el("v-opacity").addEventListener("input", applyOverlay);
  for (const canvas of [el("v-main"), el("v-other")]) {
    canvas.addEventListener("keydown", (event) => {
      const step = { ArrowUp: 1, ArrowRight: 1, PageUp: 1, ArrowDown: -1, ArrowLeft: -1, PageDown: -1 }[event.key];
      if (step === undefined) return;
      event.preventDefault();
      event.stopPropagation();
      setSlice(Number(el("v-slice").value) + step);
    });
  }
  // Polling pauses while the tab is hidden and catches up when it comes back.
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && sessionStorage.getItem(KEY)) refreshJobs();
  });
}

async function main() {
  wire();
  if (sessionStorage.getItem(KEY)) {
    try {
      await api("GET", "/jobs?limit=1");
      await enter();
      return;
    } catch (err) {
      return signOut(err.status === 401 ? UNAUTHORIZED : `Could not reach the service: ${describe(err)}`);
    }
  }
  el("api-key").focus();
}

main();
