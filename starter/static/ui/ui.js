// The reviewer's page: reads and acts through the JSON API (/api/...), asks the app to render fragments
// (/ui/render/...) and polls for live status. No framework, nothing loaded from elsewhere.
//
// Auth: a key the user pastes is kept in sessionStorage (this tab only) and sent as
// "Authorization: Bearer <key>" on every API call; without a key no Authorization header is sent.
(() => {
  "use strict";

  const KEY_STORAGE = "flywheel.apiKey";
  const FINISHED = new Set(["completed", "cancelled", "failed"]);
  const page = document.body.dataset.page;
  const pollMs = Number(document.body.dataset.pollMs) || 3000;
  const byId = (id) => document.getElementById(id);

  // ------------------------------------------------------------------------------------------ api

  function authHeaders() {
    const key = sessionStorage.getItem(KEY_STORAGE);
    return key ? { Authorization: "Bearer " + key } : {};
  }

  class ApiError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }

  async function request(method, path, body, accept) {
    const headers = { Accept: accept || "application/json", ...authHeaders() };
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    // The API refuses any POST that is not application/json, body or not (no cross-site "simple" requests).
    if (method !== "GET") headers["Content-Type"] = "application/json";
    if (body !== undefined) init.body = JSON.stringify(body);
    const response = await fetch(path, init);
    if (!response.ok) {
      let detail = response.statusText || "request failed";
      try { const data = await response.json(); if (data && data.detail) detail = String(data.detail); } catch (_) { /* not JSON */ }
      throw new ApiError(response.status, detail);
    }
    return response;
  }

  const api = async (method, path, body) => (await request(method, path, body)).json();
  const renderFragment = async (kind, data) => (await request("POST", "/ui/render/" + kind, data, "text/html")).text();

  // ------------------------------------------------------------------------------------------ feedback

  function flash(message, kind) {
    const box = byId("flash");
    box.textContent = message;
    box.className = "flash " + (kind || "");
    box.hidden = false;
  }

  function explain(error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      return `The API refused (${error.status}): ${error.message}. Paste an API key above.`;
    }
    if (error instanceof ApiError) return `${error.status}: ${error.message}`;
    return `The API did not answer (${error.message}).`;
  }

  function liveState(text) {
    const el = byId("live-state");
    if (el) el.textContent = text;
  }

  const now = () => new Date().toLocaleTimeString();

  // ------------------------------------------------------------------------------------------ polling

  // Runs tick() now and then every `every` ms while the tab is visible; tick() returns false to stop.
  // One tick at a time: a tick asked for while one runs (after a button) runs right after it.
  function poll(tick, every) {
    let timer = null;
    let stopped = false;
    let running = false;
    let again = false;
    const run = async () => {
      clearTimeout(timer);
      if (running) { again = true; return; }
      if (stopped) return;
      if (document.hidden) { timer = setTimeout(run, every); return; }
      running = true;
      let more = true;
      try {
        more = (await tick()) !== false;
      } catch (error) {
        liveState(`not updated: ${explain(error)} (retrying)`);
      } finally {
        running = false;
      }
      if (!more) stopped = true;
      if (again) { again = false; stopped = false; run(); } else if (!stopped) timer = setTimeout(run, every);
    };
    document.addEventListener("visibilitychange", () => { if (!document.hidden && !stopped) run(); });
    run();
    return { now: () => { stopped = false; run(); } };
  }

  // Replace a fragment only when the data changed (keeps scroll position and avoids re-rendering the plot).
  async function refresh(container, kind, data) {
    const fingerprint = JSON.stringify(data);
    if (container.dataset.fingerprint === fingerprint) return false;
    container.innerHTML = await renderFragment(kind, data);
    container.dataset.fingerprint = fingerprint;
    return true;
  }

  // ------------------------------------------------------------------------------------------ header

  function setUpHeader(onChange) {
    const keyInput = byId("api-key");
    const state = byId("auth-state");
    const show = () => {
      state.textContent = sessionStorage.getItem(KEY_STORAGE)
        ? "key set: requests carry Authorization: Bearer"
        : "no key: requests go without Authorization";
    };
    byId("auth").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = keyInput.value.trim();
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      keyInput.value = "";
      show();
      onChange();
    });
    byId("api-key-clear").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORAGE);
      show();
      onChange();
    });
    show();
  }


  // ------------------------------------------------------------------------------------------ jobs page

  function jobsPage() {
    const container = byId("jobs-live");
    const params = new URLSearchParams(window.location.search);
    const query = new URLSearchParams();
    for (const name of ["workload_id", "client_id", "status"]) {
      if (params.get(name)) query.set(name, params.get(name));
    }
    let offset = Math.max(0, Number(params.get("offset")) || 0);
    const poller = poll(async () => {
      query.set("offset", String(offset));
      const listing = await api("GET", "/api/jobs?" + query.toString());
      await refresh(container, "jobs", listing);
      liveState(`live · ${listing.total} job(s) · updated ${now()}`);
    }, pollMs);

    container.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-offset]");
      if (!button) return;
      offset = Number(button.dataset.offset) || 0;
      const url = new URL(window.location.href);
      url.searchParams.set("offset", String(offset));
      history.replaceState(null, "", url);
      poller.now();
    });

    byId("start-job").addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = event.target;
      const body = { workload_id: form.workload_id.value.trim(), client_id: form.client_id.value.trim() };
      if (form.config_name.value.trim()) body.config_name = form.config_name.value.trim();
      if (form.eval_size.value) body.data_split_config = { eval_size: Number(form.eval_size.value) };
      byId("start-button").disabled = true;
      try {
        const created = await api("POST", "/api/jobs", body);
        window.location.assign("/ui/jobs/" + encodeURIComponent(created.id));
      } catch (error) {
        flash(`Could not start the job: ${explain(error)}`, "error");
        byId("start-button").disabled = false;
      }
    });
    return poller;
  }

  // ------------------------------------------------------------------------------------------ job page

  function jobPage() {
    const container = byId("job-live");
    const jobId = container.dataset.jobId;
    const path = "/api/jobs/" + encodeURIComponent(jobId);
    const select = byId("promote-model");
    let doc = null;

    function updateActions() {
      byId("actions").hidden = false;
      const awaiting = doc.stage === "awaiting_review";
      byId("review-controls").hidden = !awaiting;
      byId("cancel-button").hidden = FINISHED.has(doc.status);
      const closed = byId("review-closed");
      closed.hidden = awaiting;
      closed.textContent = doc.review
        ? `Decision: ${doc.review.decision || "recorded"}${doc.review.model_name ? " (" + doc.review.model_name + ")" : ""}.`
        : (FINISHED.has(doc.status) ? "This run has ended without a review." : "Review opens when the evaluations are done.");
      const names = (doc.nims || []).map((nim) => nim.model_name);
      const current = Array.from(select.options).map((o) => o.value);
      if (names.join("\n") !== current.join("\n")) {
        const chosen = select.value;
        select.replaceChildren(...names.map((name) => new Option(name, name)));
        if (names.includes(chosen)) select.value = chosen;
      }
    }

    const poller = poll(async () => {
      try {
        doc = await api("GET", path);
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) {
          container.replaceChildren();
          const p = document.createElement("p");
          p.className = "error";
          p.id = "not-found";
          p.textContent = error.message;
          container.append(p);
          liveState("not found");
          return false;
        }
        throw error;
      }
      await refresh(container, "job", doc);
      updateActions();
      const finished = FINISHED.has(doc.status);
      liveState(finished ? `finished (${doc.status}) · updated ${now()}` : `live · ${doc.stage} · updated ${now()}`);
      return !finished;
    }, pollMs);

    async function act(label, method, actionPath, body) {
      for (const button of document.querySelectorAll("#actions button")) button.disabled = true;
      try {
        const answer = await api(method, actionPath, body);
        flash(`${label}: ${answer.message || "done"}`, "ok");
      } catch (error) {
        flash(`${label} failed: ${explain(error)}`, "error");
      } finally {
        for (const button of document.querySelectorAll("#actions button")) button.disabled = false;
        poller.now();
      }
    }

    const note = () => byId("review-note").value.trim() || undefined;
    byId("promote-button").addEventListener("click", () => {
      if (!select.value) return;
      act("Promote", "POST", path + "/promote", { model_name: select.value, note: note() });
    });
    byId("reject-button").addEventListener("click", () => {
      act("Reject", "POST", path + "/reject", { reason: note() });
    });
    byId("cancel-button").addEventListener("click", () => {
      if (window.confirm("Cancel this job? Running evaluations and training stop.")) {
        act("Cancel", "POST", path + "/cancel");
      }
    });
    return poller;
  }

  // ------------------------------------------------------------------------------------------ schedules

  function schedulesPage() {
    const container = byId("schedules-live");
    const poller = poll(async () => {
      const listing = await api("GET", "/api/schedules");
      await refresh(container, "schedules", listing);
      liveState(`live · ${(listing.schedules || []).length} schedule(s) · updated ${now()}`);
    }, pollMs);
    container.addEventListener("click", async (event) => {
      const button = event.target.closest("button[data-schedule-op]");
      if (!button) return;
      const { scheduleOp, scheduleId } = button.dataset;
      button.disabled = true;
      try {
        const answer = await api("POST", `/api/schedules/${encodeURIComponent(scheduleId)}/${scheduleOp}`);
        flash(answer.message || "done", "ok");
      } catch (error) {
        flash(`Schedule ${scheduleOp} failed: ${explain(error)}`, "error");
      } finally {
        button.disabled = false;
        poller.now();
      }
    });
    return poller;
  }

  // ------------------------------------------------------------------------------------------ start

  const pages = { jobs: jobsPage, job: jobPage, schedules: schedulesPage };
  let poller = null;
  setUpHeader(() => poller && poller.now());
  if (pages[page]) poller = pages[page]();
})();
