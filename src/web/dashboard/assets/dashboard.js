// esm's dashboard: live updates from the event stream, and the three actions. No
// framework and no HTML built from text: everything shown is set with textContent.

const VERSION = { "X-Broker-API-Version": "2.17" };
// Every event type esm makes, and those that are an operation's failure: the page
// carries them (from the server's one list), so this script keeps no copy.
const TYPES = (document.body.dataset.eventTypes || "").split(" ").filter(Boolean);
const FAILURES = new Set((document.body.dataset.failureTypes || "").split(" ").filter(Boolean));

function cell(text, href) {
  const td = document.createElement("td");
  if (href) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    td.append(a);
  } else {
    td.textContent = text;
  }
  return td;
}

// A new event: the feed gets a row on top; a liveness change updates what shows it.
function shown(event) {
  const feed = document.querySelector("#live tbody");
  if (feed) {
    const row = document.createElement("tr");
    if (FAILURES.has(event.type)) row.className = "failed";
    const what = [event.from && event.to ? `${event.from} → ${event.to}` : "", event.reason || event.description || ""]
      .filter(Boolean)
      .join(" · ");
    const instance = event.instance_id || "";
    row.append(cell(String(event.id)), cell(event.at), cell(event.type),
      cell(instance, instance ? `/dashboard/instances/${encodeURIComponent(instance)}` : null), cell(what));
    feed.prepend(row);
  }
  if (event.type === "liveness.changed" && event.instance_id) {
    for (const holder of document.querySelectorAll("[data-liveness]")) {
      const row = holder.closest("[data-instance]") || holder;
      if (row.dataset.instance !== event.instance_id) continue;
      holder.dataset.liveness = event.to;
      const text = holder.querySelector(".liveness") || holder;
      text.textContent = event.to;
    }
  }
}

// Parts of a page marked `data-refresh-on="<type prefixes>"` (empty: every event) are
// fetched again, as the server renders them, when such an event arrives: at most once
// per half second each. The server escaped them; nothing here builds HTML from text.
const pending = new Set();
function refresh(event) {
  for (const part of document.querySelectorAll("[data-refresh-on]")) {
    const prefixes = part.dataset.refreshOn.split(" ");
    if (!prefixes.some((prefix) => event.type.startsWith(prefix)) || pending.has(part.id)) continue;
    pending.add(part.id);
    setTimeout(async () => {
      pending.delete(part.id);
      const response = await fetch(location.href);
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById(part.id);
      if (fresh) document.getElementById(part.id)?.replaceWith(document.importNode(fresh, true));
    }, 500);
  }
}

function listen() {
  const live = document.querySelector("#live");
  const watched = document.querySelector("[data-liveness], [data-refresh-on]");
  if (!live && !watched) return;
  const feed = live ? live.dataset.feed : "all";
  // From now on: the page was rendered with what came before.
  const query = feed && feed !== "all" ? `?instance_id=${encodeURIComponent(feed)}` : "";
  const source = new EventSource(`/v2/et/events${query}`);
  for (const type of TYPES) {
    source.addEventListener(type, (message) => {
      try {
        const event = JSON.parse(message.data);
        shown(event);
        refresh(event);
      } catch (_) {
        // A frame that is not an event: nothing to show.
      }
    });
  }
}

async function call(method, path, body) {
  const headers = { ...VERSION };
  if (body) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.description || `${response.status} ${response.statusText}`);
  return answer;
}

const ACTIONS = {
  async deprovision(button) {
    const { instance, service, plan } = button.dataset;
    if (!confirm(`Deprovision instance ${instance}? Its deployment is removed.`)) return null;
    const query = new URLSearchParams({ service_id: service, plan_id: plan, accepts_incomplete: "true" });
    await call("DELETE", `/v2/service_instances/${encodeURIComponent(instance)}?${query}`);
    return `Deprovisioning ${instance}.`;
  },
  async drain(button) {
    const { plan } = button.dataset;
    if (!confirm(`Drain the pool of plan ${plan}? Its idle members are removed.`)) return null;
    await call("DELETE", `/v2/et/pools/${encodeURIComponent(plan)}`);
    return `Draining the pool of ${plan}.`;
  },
  async resize(button) {
    const { plan, size } = button.dataset;
    const wanted = prompt(`New size of the pool of plan ${plan}:`, size);
    if (wanted === null) return null;
    const current = await call("GET", `/v2/et/pools/${encodeURIComponent(plan)}`);
    const body = { size: Number(wanted), max_age_seconds: current.max_age_seconds, parameters: current.parameters };
    if (!confirm(`Resize the pool of plan ${plan} from ${size} to ${body.size}?`)) return null;
    await call("PUT", `/v2/et/pools/${encodeURIComponent(plan)}`, body);
    return `The pool of ${plan} is resized to ${body.size}.`;
  },
};

function say(text, failed) {
  let status = document.querySelector("#status");
  if (!status) {
    status = document.createElement("p");
    status.id = "status";
    status.setAttribute("role", "status");
    document.querySelector("main").prepend(status);
  }
  status.className = failed ? "failed" : "";
  status.textContent = text;
}

document.addEventListener("click", async (click) => {
  const button = click.target.closest("button[data-action]");
  if (!button) return;
  try {
    const done = await ACTIONS[button.dataset.action](button);
    if (done) say(done, false);
  } catch (error) {
    say(error.message, true);
  }
});

listen();
