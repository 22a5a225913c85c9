// kfctl serve: the wizard and the live view of a deployment.
// Plain DOM code, no framework and no build step. Text from the server is always set with
// textContent, never parsed as HTML.
"use strict";

const STEPS = ["platform", "version", "components", "user", "review"];
const UPSTREAM_DEFAULT_PASSWORD = "12341234";
const DNS1123 = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

const state = {
  csrf: null,
  catalog: { versions: [] },
  step: 0,
  kubeconfigContent: null,
  events: null,
  lastPreview: null,
  upgradeJob: null,
};

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// ---- talking to the server ----

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    headers["X-Kfctl-Csrf"] = state.csrf;
  }
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (!response.ok) {
    const error = new Error((data && data.error) || `HTTP ${response.status}`);
    error.status = response.status;
    error.data = data;
    throw error;
  }
  return data;
}

function showBanner(message) {
  const banner = $("#banner");
  banner.textContent = message;
  banner.hidden = !message;
}

// ---- routing: #/new, #/jobs, #/job/ID ----

function route() {
  const hash = location.hash || "#/new";
  if (state.events) { state.events.close(); state.events = null; }
  showBanner("");
  for (const id of ["wizard", "job", "jobs"]) $("#" + id).hidden = true;
  $("#nav-new").removeAttribute("aria-current");
  $("#nav-jobs").removeAttribute("aria-current");
  const job = hash.match(/^#\/job\/([0-9a-f]{32})$/);
  if (job) {
    showJob(job[1]);
  } else if (hash === "#/jobs") {
    $("#nav-jobs").setAttribute("aria-current", "page");
    showJobs();
  } else {
    $("#nav-new").setAttribute("aria-current", "page");
    $("#wizard").hidden = false;
    showStep(state.step);
  }
  $("#main").focus({ preventScroll: true });
}

// ---- the wizard ----

function currentPlatform() {
  return $("input[name=platform]:checked").value;
}

function kubeconfigSource() {
  return $("input[name=kubeconfig-source]:checked").value;
}

function showStep(index) {
  state.step = index;
  const name = STEPS[index];
  for (const fieldset of $$("fieldset.step")) fieldset.hidden = fieldset.dataset.step !== name;
  $$("#steps li").forEach((li, i) => {
    li.classList.toggle("done", i < index);
    if (i === index) li.setAttribute("aria-current", "step");
    else li.removeAttribute("aria-current");
  });
  $("#back").hidden = index === 0;
  $("#next").textContent = name === "review" ? "Deploy" : "Next";
  document.title = `kfctl — ${$(`#steps li[data-step=${name}]`).textContent}`;
}

function clearErrors() {
  for (const p of $$("[data-error-for]")) p.textContent = "";
  for (const input of $$("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

function setError(field, message) {
  const target = $(`[data-error-for="${CSS.escape(field)}"]`) || $(`[data-error-for="${field.split(".")[0]}"]`);
  if (target) target.textContent = target.textContent ? `${target.textContent} ${message}` : message;
  else showBanner(`${field}: ${message}`);
}

function platformForm() {
  const kind = currentPlatform();
  const form = { kind };
  if (kind === "existing") {
    const source = kubeconfigSource();
    form.kubeconfig = source === "upload"
      ? { source: "upload", content: state.kubeconfigContent || "" }
      : { source: "server_path", path: $("#kubeconfig-path").value.trim() };
    const context = $("#kube-context").value;
    form.context = context || null;
    return form;
  }
  for (const input of $$(`.platform-fields[data-platform=${kind}] [data-field]`)) {
    form[input.dataset.field] = input.type === "number" ? Number(input.value) : input.value.trim();
  }
  return form;
}

function deploymentForm() {
  return {
    name: $("#app-name").value.trim(),
    version: $("#version").value,
    platform: platformForm(),
    components: $$("#components input:checked").map((input) => input.value),
    user: { email: $("#user-email").value.trim(), password: $("#user-password").value },
  };
}

// Quick checks in the browser; the server checks everything again and has the last word.
function checkStep(name) {
  clearErrors();
  let ok = true;
  const fail = (field, message, input) => {
    ok = false;
    setError(field, message);
    if (input) input.setAttribute("aria-invalid", "true");
  };
  if (name === "platform") {
    const kind = currentPlatform();
    if (kind === "existing") {
      if (kubeconfigSource() === "upload" && !state.kubeconfigContent) fail("platform", "Choose a kubeconfig file.", $("#kubeconfig-file"));
      if (kubeconfigSource() === "server_path" && !$("#kubeconfig-path").value.trim().startsWith("/")) fail("platform", "Enter an absolute path.", $("#kubeconfig-path"));
    }
    for (const input of $$(`.platform-fields[data-platform=${kind}] [data-field]`)) {
      if (!input.checkValidity()) fail("platform", `${input.labels[0].textContent}: ${input.validationMessage}`, input);
    }
  } else if (name === "version") {
    if (!DNS1123.test($("#app-name").value.trim())) fail("name", "Use lowercase letters, digits and “-”.", $("#app-name"));
    if (!$("#version").value) fail("version", "Choose a version.", $("#version"));
  } else if (name === "components") {
    if (!$$("#components input:checked").length) fail("components", "Choose at least one component.");
  } else if (name === "user") {
    const email = $("#user-email");
    const password = $("#user-password");
    if (!email.checkValidity()) fail("user.email", "Enter an email address.", email);
    if (password.value === UPSTREAM_DEFAULT_PASSWORD) fail("user.password", "This is the upstream default password; choose your own.", password);
    else if (password.value.length < 10) fail("user.password", "Use at least 10 characters.", password);
    if (password.value !== $("#user-password2").value) fail("password2", "The passwords differ.", $("#user-password2"));
  }
  return ok;
}

// Server-side field errors: show each, and go back to the first step that has one.
function showFieldErrors(fields) {
  clearErrors();
  const stepOf = (field) => {
    if (field.startsWith("platform")) return 0;
    if (field === "name" || field === "version") return 1;
    if (field === "components") return 2;
    if (field.startsWith("user")) return 3;
    return 4;
  };
  let first = STEPS.length - 1;
  for (const { field, message } of fields) {
    first = Math.min(first, stepOf(field));
    setError(field, message);
  }
  showStep(first);
  for (const { field, message } of fields) setError(field, message);
}

function fillVersions() {
  const select = $("#version");
  select.replaceChildren(...state.catalog.versions.map((v) => el("option", { value: v.version, text: v.version })));
  if (state.catalog.versions.some((v) => v.version === state.catalog.default_version)) select.value = state.catalog.default_version;
  fillComponents();
}

function catalogComponents() {
  const version = state.catalog.versions.find((v) => v.version === $("#version").value);
  return version ? version.components : [];
}

function fillComponents() {
  const list = $("#components");
  const components = catalogComponents();
  const neededBy = {};
  for (const c of components) for (const r of c.requires) (neededBy[r] = neededBy[r] || []).push(c.name);
  list.replaceChildren(...components.map((c) => {
    const input = el("input", { type: "checkbox", value: c.name, id: `component-${c.name}`, checked: c.default });
    const needs = c.requires.length ? el("span", { class: "needs", text: `Needs: ${c.requires.join(", ")}` }) : null;
    const label = el("label", { for: `component-${c.name}` }, input,
      el("span", {}, el("b", { text: c.name }), c.default ? el("span", { class: "base", text: "base" }) : null,
        el("span", { class: "desc", text: c.description }), needs));
    input.addEventListener("change", () => componentChanged(c.name, input.checked));
    return el("li", {}, label);
  }));
  $("#components-note").textContent = "";
}

// Checking a component checks what it needs; unchecking one unchecks what needs it. Say so.
function componentChanged(name, checked) {
  const components = catalogComponents();
  const byName = Object.fromEntries(components.map((c) => [c.name, c]));
  const box = (n) => $(`#component-${CSS.escape(n)}`);
  const changed = [];
  if (checked) {
    const queue = [...byName[name].requires];
    while (queue.length) {
      const dep = queue.shift();
      if (box(dep) && !box(dep).checked) { box(dep).checked = true; changed.push(dep); queue.push(...byName[dep].requires); }
    }
    $("#components-note").textContent = changed.length ? `Also chose ${changed.join(", ")}: ${name} needs ${changed.length > 1 ? "them" : "it"}.` : "";
  } else {
    let again = true;
    while (again) {
      again = false;
      for (const c of components) {
        if (box(c.name).checked && c.requires.some((r) => !box(r).checked)) { box(c.name).checked = false; changed.push(c.name); again = true; }
      }
    }
    $("#components-note").textContent = changed.length ? `Also removed ${changed.join(", ")}: ${changed.length > 1 ? "they need" : "it needs"} ${name}.` : "";
  }
}

function selectComponents(all) {
  for (const c of catalogComponents()) $(`#component-${CSS.escape(c.name)}`).checked = all || c.default;
  $("#components-note").textContent = "";
}

async function loadContexts() {
  clearErrors();
  const source = kubeconfigSource() === "upload"
    ? { source: "upload", content: state.kubeconfigContent || "" }
    : { source: "server_path", path: $("#kubeconfig-path").value.trim() };
  const select = $("#kube-context");
  try {
    const data = await api("POST", "/api/kubeconfig/contexts", { kubeconfig: source });
    select.replaceChildren(...data.contexts.map((name) => el("option", { value: name, text: name, selected: name === data.current_context })));
    select.disabled = false;
  } catch (error) {
    select.replaceChildren(el("option", { value: "", text: "Load the kubeconfig first" }));
    select.disabled = true;
    if (error.data && error.data.fields) for (const f of error.data.fields) setError("platform", f.message);
    else setError("platform", error.message);
  }
}

function renderReview(preview) {
  const form = deploymentForm();
  const dl = el("dl");
  const row = (term, value) => dl.append(el("dt", { text: term }), el("dd", { text: value }));
  row("Name", form.name);
  row("Platform", form.platform.kind + (form.platform.context ? ` (context ${form.platform.context})` : ""));
  row("Version", form.version);
  row("Components", preview.components.join(", "));
  row("Login", `${form.user.email} (new password set)`);
  $("#review-summary").replaceChildren(dl);
  $("#review-yaml").textContent = preview.kfctl_yaml;
  $("#review-terraform").hidden = !preview.terraform;
  $("#review-terraform-text").textContent = preview.terraform || "";
}

async function next(event) {
  event.preventDefault();
  const name = STEPS[state.step];
  if (!checkStep(name)) return;
  const button = $("#next");
  button.disabled = true;
  try {
    if (name === "user") {
      const preview = await api("POST", "/api/preview", deploymentForm());
      state.lastPreview = preview;
      renderReview(preview);
      showStep(state.step + 1);
    } else if (name === "review") {
      const job = await api("POST", "/api/jobs", deploymentForm());
      $("#user-password").value = "";
      $("#user-password2").value = "";
      location.hash = `#/job/${job.id}`;
    } else {
      showStep(state.step + 1);
    }
  } catch (error) {
    if (error.data && error.data.fields) showFieldErrors(error.data.fields);
    else showBanner(`${error.message}${error.data && error.data.hint ? " — " + error.data.hint : ""}`);
  } finally {
    button.disabled = false;
  }
}

// ---- one deployment ----

function resetJobView() {
  $("#job-phases").replaceChildren();
  $("#job-components").replaceChildren();
  $("#job-log").replaceChildren();
  $("#job-links").replaceChildren();
  $("#job-done").hidden = true;
}

function setJobState(record) {
  $("#job-title").textContent = `Deployment ${record.name}`;
  const badge = $("#job-state");
  badge.textContent = record.state;
  badge.className = `badge ${record.state}`;
  $("#job-summary").textContent = record.summary || `${record.platform}, Kubeflow ${record.version}`;
  document.title = `kfctl — ${record.name}: ${record.state}`;
  const resume = $("#job-resume");
  resume.hidden = record.state !== "interrupted";
  $("#resume-job").onclick = () => resumeJob(record.id);
  if (record.state !== "running") {
    const links = $("#job-links");
    links.replaceChildren(...record.access.map((link) => el("li", {},
      el("a", { href: link.url, target: "_blank", rel: "noopener noreferrer", text: `${link.label}: ${link.url}` }),
      link.command ? el("div", { class: "help" }, "First run: ", el("code", { text: link.command })) : null)));
    $("#job-download").setAttribute("href", `/api/jobs/${record.id}/download`);
    $("#job-done").hidden = false;
    const open = $("#open-codelabs");
    open.hidden = record.state !== "succeeded";
    open.onclick = () => openCodelabs(record.id);
    showUpgrade(record);
  }
}

// ---- upgrading a deployed app: the plan, confirmed, then a job of its own ----

function showUpgrade(record) {
  const section = $("#job-upgrade");
  const others = state.catalog.versions.map((v) => v.version).filter((v) => v !== record.version);
  section.hidden = record.state !== "succeeded" || others.length === 0;
  if (section.hidden) return;
  state.upgradeJob = record.id;
  $("#upgrade-current").textContent = record.version;
  $("#upgrade-to").replaceChildren(...others.map((v) => el("option", { value: v, text: v })));
  $("#upgrade-review").hidden = true;
}

function upgradeReady() {
  const boxes = $$("#upgrade-steps input[type=checkbox][data-blocking]");
  $("#upgrade-start").disabled = !boxes.every((box) => box.checked);
}

async function planUpgrade() {
  const button = $("#upgrade-plan");
  const to = $("#upgrade-to").value;
  button.disabled = true;
  showBanner("");
  try {
    const plan = await api("POST", `/api/jobs/${state.upgradeJob}/upgrade/plan`, { to });
    $("#upgrade-text").textContent = plan.text;
    $("#upgrade-target").textContent = plan.to;
    $("#upgrade-steps").replaceChildren(...plan.manual.filter((m) => m.blocking && !m.confirmed).map((m) => el("li", {},
      el("label", {}, el("input", { type: "checkbox", value: m.id, "data-blocking": true }), ` I have done step ${m.id}: ${m.why}`))));
    for (const box of $$("#upgrade-steps input")) box.addEventListener("change", upgradeReady);
    $("#upgrade-review").hidden = false;
    upgradeReady();
  } catch (error) {
    showBanner(`${error.message}${error.data && error.data.hint ? " — " + error.data.hint : ""}`);
  } finally {
    button.disabled = false;
  }
}

async function startUpgrade() {
  const button = $("#upgrade-start");
  button.disabled = true;
  const confirm = $$("#upgrade-steps input:checked").map((box) => box.value);
  try {
    const job = await api("POST", `/api/jobs/${state.upgradeJob}/upgrade`, { to: $("#upgrade-target").textContent, confirm });
    location.hash = `#/job/${job.id}`;
  } catch (error) {
    showBanner(`${error.message}${error.data && error.data.hint ? " — " + error.data.hint : ""}`);
    button.disabled = false;
  }
}

// ---- resuming a job the server's stop interrupted: the same job runs again ----

async function resumeJob(id) {
  const button = $("#resume-job");
  button.disabled = true;
  showBanner("");
  try {
    await api("POST", `/api/jobs/${id}/resume`, {});
    if (state.events) { state.events.close(); state.events = null; }
    await showJob(id);
  } catch (error) {
    showBanner(`${error.message}${error.data && error.data.hint ? " — " + error.data.hint : ""}`);
  } finally {
    button.disabled = false;
  }
}

async function openCodelabs(id) {
  const button = $("#open-codelabs");
  const help = $("#codelabs-help");
  button.disabled = true;
  help.textContent = "Starting your notebook server with the codelabs…";
  try {
    const answer = await api("POST", `/api/jobs/${id}/notebook`, {});
    const link = answer.link;
    $("#job-links").append(el("li", {},
      el("a", { href: link.url, target: "_blank", rel: "noopener noreferrer", text: `${link.label}: ${link.url}` }),
      link.command ? el("div", { class: "help" }, "First run: ", el("code", { text: link.command })) : null,
      el("div", { class: "help", text: answer.sign_in })));
    help.textContent = "Ready.";
  } catch (error) {
    help.textContent = "";
    showBanner(error.message);
  } finally {
    button.disabled = false;
  }
}

function logLine(time, text, kind) {
  const log = $("#job-log");
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  const stamp = time ? new Date(time).toLocaleTimeString() : "";
  log.append(el("li", { class: kind || null }, el("time", { datetime: time, text: stamp }), text));
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function phaseRow(phase) {
  let row = $(`#job-phases li[data-phase="${CSS.escape(phase)}"]`);
  if (!row) {
    row = el("li", { "data-phase": phase }, el("span", { class: "name", text: phase }), el("span", { class: "count", text: "" }));
    $("#job-phases").append(row);
  }
  return row;
}

function componentRow(component) {
  let row = $(`#job-components tr[data-component="${CSS.escape(component)}"]`);
  if (!row) {
    row = el("tr", { "data-component": component }, el("th", { scope: "row", text: component }), el("td"), el("td"));
    $("#job-components").append(row);
  }
  return row;
}

function applyEvent(event) {
  const p = event.progress;
  const where = (o) => `${o.kind} ${o.namespace ? o.namespace + "/" : ""}${o.name}`;
  switch (p.type) {
    case "message": logLine(event.time, p.text); break;
    case "phase_started":
      phaseRow(p.phase).querySelector(".count").textContent = `${p.objects} objects…`;
      logLine(event.time, `Phase ${p.phase}: ${p.objects} objects`);
      break;
    case "phase_finished": {
      const row = phaseRow(p.phase);
      row.classList.add(p.failed ? "failed" : "done");
      row.querySelector(".count").textContent = p.failed ? `${p.applied} applied, ${p.failed} failed` : `${p.applied} applied`;
      break;
    }
    case "object_applied": logLine(event.time, `${p.component}: ${where(p)} ${p.outcome}`); break;
    case "object_failed": logLine(event.time, `${p.component}: ${where(p)} failed: ${p.reason}`, "error"); break;
    case "component_status": {
      const row = componentRow(p.component);
      const [ready, reason] = row.querySelectorAll("td");
      ready.textContent = p.ready ? "Ready" : "Not ready";
      ready.className = p.ready ? "yes" : "no";
      reason.textContent = p.reason || "";
      break;
    }
    case "waiting": logLine(event.time, `Waiting for ${p.what}${p.reason ? ": " + p.reason : ""}`); break;
    case "event": logLine(event.time, `Event ${p.reason}: ${p.message}`, p.warning ? "warning" : null); break;
    case "finished": logLine(event.time, p.summary, p.ok ? null : "error"); break;
    default: logLine(event.time, JSON.stringify(p));
  }
}

async function showJob(id) {
  $("#job").hidden = false;
  resetJobView();
  let record;
  try {
    record = await api("GET", `/api/jobs/${id}`);
  } catch (error) {
    showBanner(error.message);
    return;
  }
  setJobState(record);
  // The server replays the whole log, then streams; on a dropped connection EventSource
  // reconnects with Last-Event-ID and gets only what it missed.
  const events = new EventSource(`/api/jobs/${id}/events`);
  state.events = events;
  events.addEventListener("progress", (message) => {
    const event = JSON.parse(message.data);
    applyEvent(event);
    // A resumed job's log holds its interruption's last event and goes on after it: the
    // stream is done only when the job's record says it ended (written before its last event).
    if (event.last) {
      api("GET", `/api/jobs/${id}`).then((record) => {
        if (record.state !== "running") events.close();
        setJobState(record);
      }).catch((error) => showBanner(error.message));
    }
  });
}

async function showJobs() {
  $("#jobs").hidden = false;
  try {
    const data = await api("GET", "/api/jobs");
    $("#jobs-list").replaceChildren(...data.jobs.map((job) => el("tr", {},
      el("td", {}, el("a", { href: `#/job/${job.id}`, text: job.name })),
      el("td", { text: job.platform }), el("td", { text: job.version }),
      el("td", {}, el("span", { class: `badge ${job.state}`, text: job.state })),
      el("td", { text: new Date(job.created).toLocaleString() }))));
    $("#jobs-empty").hidden = data.jobs.length > 0;
  } catch (error) {
    showBanner(error.message);
  }
}

// ---- start ----

function wire() {
  $("#wizard-form").addEventListener("submit", next);
  $("#back").addEventListener("click", () => { clearErrors(); showStep(Math.max(0, state.step - 1)); });
  for (const radio of $$("input[name=platform]")) {
    radio.addEventListener("change", () => {
      for (const block of $$(".platform-fields")) block.hidden = block.dataset.platform !== currentPlatform();
      clearErrors();
    });
  }
  for (const radio of $$("input[name=kubeconfig-source]")) {
    radio.addEventListener("change", () => {
      for (const block of $$("[data-source]")) block.hidden = block.dataset.source !== kubeconfigSource();
    });
  }
  $("#kubeconfig-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    state.kubeconfigContent = file ? await file.text() : null;
    if (file) loadContexts();
  });
  $("#load-contexts").addEventListener("click", loadContexts);
  $("#version").addEventListener("change", fillComponents);
  $("#components-base").addEventListener("click", () => selectComponents(false));
  $("#components-all").addEventListener("click", () => selectComponents(true));
  $("#upgrade-plan").addEventListener("click", planUpgrade);
  $("#upgrade-start").addEventListener("click", startUpgrade);
  window.addEventListener("hashchange", route);
}

async function start() {
  wire();
  try {
    const [session, catalog] = await Promise.all([api("GET", "/api/session"), api("GET", "/api/catalog")]);
    state.csrf = session.csrf_token;
    state.catalog = catalog;
    fillVersions();
  } catch (error) {
    showBanner(`${error.message}. Open the URL that kfctl serve printed (it carries the access token).`);
  }
  route();
}

document.addEventListener("DOMContentLoaded", start);
