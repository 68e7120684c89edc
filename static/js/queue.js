/* The review queue's keyboard and claims. No framework: htmx does the requests, this file the focus.
 *
 * j/k move, a/d/e respond, m opens the action picker (then 1-9), n a note, x selects, z brings the last
 * answer back to change it, ? shows the help.
 * Keys do nothing while typing in a field. Focusing an item claims it (and releases the one left behind).
 * Entry ids are unique per agent only, so an item is known by its key, "agentId:entryId" (data-key).
 */
(function () {
  "use strict";

  const body = document.getElementById("queue-body");
  if (!body) return;
  const claimUrl = body.dataset.claimUrl;
  const help = document.getElementById("help");
  let focusedId = null; // key of the focused item
  let claimedId = null; // key of the item this page holds a claim on
  let claimed = null; // { entry_id, agent } of that item, to release it
  let wantFocus = null; // after a response, the item to focus next
  let busy = false; // a response is on its way; keys wait for it
  let answering = new Set(); // keys of the items of the response on its way
  const me = body.dataset.reviewer || "";

  function csrf() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch (err) {
      return "";
    }
  }

  function items() {
    return Array.from(body.querySelectorAll("#queue-list > .item"));
  }

  function focused() {
    return items().find((el) => el.dataset.key === focusedId) || null;
  }

  function selected() {
    return Array.from(body.querySelectorAll("#queue-list input.select:checked"));
  }

  function isTyping(target) {
    if (!target || !target.closest) return false;
    if (target.closest("textarea, select, [contenteditable='true']")) return true;
    const input = target.closest("input");
    return !!input && !["checkbox", "radio", "button", "submit", "reset"].includes(input.type);
  }

  function notify(message, kind) {
    let list = body.querySelector(".notices");
    if (!list) {
      list = document.createElement("ul");
      list.className = "notices";
      list.setAttribute("role", "status");
      const stats = body.querySelector(".stats");
      if (stats) stats.after(list);
      else body.prepend(list);
    }
    const li = document.createElement("li");
    li.className = "notice " + (kind || "");
    li.dataset.outcome = kind || "";
    li.textContent = message;
    list.appendChild(li);
  }

  function updateSelection() {
    const chosen = selected();
    body.querySelectorAll("[data-selected-count]").forEach((el) => {
      el.textContent = String(chosen.length);
    });
    const bar = body.querySelector(".bulkbar");
    if (bar) bar.classList.toggle("active", chosen.length > 0);
    items().forEach((el) => {
      const box = el.querySelector("input.select");
      el.classList.toggle("selected", !!box && box.checked);
    });
  }

  function claim(item) {
    const id = item.dataset.key;
    const release = claimedId && claimedId !== id && claimed ? claimed : { entry_id: "", agent: "" };
    claimedId = id;
    claimed = { entry_id: item.dataset.entryId, agent: item.dataset.agentId };
    const data = new URLSearchParams({
      entry_id: claimed.entry_id,
      entry_agent: claimed.agent,
      release: release.entry_id,
      release_agent: release.agent,
    });
    fetch(claimUrl, {
      method: "POST",
      body: data,
      headers: { "X-CSRFToken": csrf() },
      credentials: "same-origin",
    })
      .then((r) => r.json())
      .then((res) => {
        if (res.won) {
          item.classList.add("claimed");
          return;
        }
        if (claimedId === id) claimedId = null;
        // Our own answer overtook the claim: the swap that is coming takes care of the item.
        if (answering.has(id) || (res.respondedBy && res.respondedBy === me)) return;
        // Someone else has it, or it was answered meanwhile: say so and move on.
        notify(res.message, res.respondedBy ? "already_responded" : "claimed_by_other");
        const wasFocused = focusedId === id;
        const next = neighbour(item, 1) || neighbour(item, -1);
        item.remove();
        updateSelection();
        if (wasFocused) {
          focusedId = null;
          if (next) focus(next);
        }
      })
      .catch(() => {});
  }

  function neighbour(item, step) {
    const all = items();
    const i = all.indexOf(item);
    return i < 0 ? null : all[i + step] || null;
  }

  function focus(item) {
    if (!item) return;
    items().forEach((el) => el.classList.toggle("focused", el === item));
    focusedId = item.dataset.key;
    item.scrollIntoView({ block: "nearest" });
    // An answer being changed is no longer in the queue: there is nothing to claim.
    if (claimedId !== focusedId && !item.dataset.amending) claim(item);
  }

  function move(step) {
    const cur = focused();
    if (!cur) {
      focus(items()[0]);
      return;
    }
    const next = neighbour(cur, step);
    if (next) {
      closePanels(cur);
      focus(next);
    }
  }

  function closePanels(item) {
    const picker = item && item.querySelector(".picker");
    if (picker) picker.hidden = true;
  }

  function togglePicker(item) {
    const picker = item && item.querySelector(".picker");
    if (picker) picker.hidden = !picker.hidden;
  }

  function openNote(item) {
    const box = item && item.querySelector(".note-box");
    if (!box) return;
    box.hidden = false;
    box.querySelector("textarea").focus();
  }

  function toggleSelect(item) {
    const box = item && item.querySelector("input.select");
    if (!box) return;
    box.checked = !box.checked;
    updateSelection();
  }

  function respondKey(key) {
    if (selected().length > 0) {
      const bulk = body.querySelector(`#bulk-form [data-bulk="${key}"]`);
      if (bulk) bulk.click();
      return;
    }
    const item = focused();
    const button = item && item.querySelector(`button[type="submit"][data-key="${key}"]`);
    if (button) button.click();
  }

  function afterRender() {
    const all = items();
    let target = wantFocus ? all.find((el) => el.dataset.key === wantFocus) : null;
    if (!target) target = all.find((el) => el.dataset.key === focusedId) || all[0] || null;
    wantFocus = null;
    if (target) focus(target);
    else focusedId = null;
    updateSelection();
  }

  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      if (help && !help.hidden) {
        help.hidden = true;
        e.preventDefault();
      } else if (isTyping(e.target)) {
        e.target.blur();
        e.preventDefault();
      } else {
        closePanels(focused());
      }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey || isTyping(e.target)) return;
    if (e.key === "?") {
      if (help) help.hidden = !help.hidden;
      e.preventDefault();
      return;
    }
    if ((help && !help.hidden) || busy) return;
    const item = focused();
    const picker = item && item.querySelector(".picker");
    if (picker && !picker.hidden && /^[1-9]$/.test(e.key)) {
      const pick = picker.querySelector(`[data-pick="${e.key}"]`);
      if (pick) {
        e.preventDefault();
        pick.click();
      }
      return;
    }
    switch (e.key) {
      case "j":
      case "ArrowDown":
        move(1);
        break;
      case "k":
      case "ArrowUp":
        move(-1);
        break;
      case "a":
      case "d":
      case "e":
        respondKey(e.key);
        break;
      case "m":
        togglePicker(item);
        break;
      case "n":
        openNote(item);
        break;
      case "x":
        toggleSelect(item);
        break;
      case "z": {
        const undo = body.querySelector("[data-undo]");
        if (!undo) return;
        wantFocus = undo.dataset.undo;
        undo.click();
        break;
      }
      default:
        return;
    }
    e.preventDefault();
  });

  document.addEventListener("click", (e) => {
    const target = e.target;
    if (!(target instanceof Element)) return;
    if (target.closest("[data-help-toggle]") && help) {
      help.hidden = !help.hidden;
      return;
    }
    const item = target.closest("#queue-list > .item");
    if (item && item.dataset.key !== focusedId) focus(item);
    if (target.closest("[data-toggle-picker]")) togglePicker(item);
    if (target.closest("[data-toggle-note]")) openNote(item);
    if (target.closest("[data-clear-selection]")) {
      selected().forEach((box) => {
        box.checked = false;
      });
      updateSelection();
    }
  });

  body.addEventListener("change", (e) => {
    if (e.target instanceof Element && e.target.matches("input.select")) updateSelection();
  });

  document.body.addEventListener("htmx:beforeRequest", (e) => {
    const elt = e.detail.elt;
    // Only responses hold the keys; the header's own request does not.
    if (!(elt instanceof Element) || !body.contains(elt) || !elt.closest("form.respond, #bulk-form")) return;
    busy = true;
    // Remember which item comes next: the first after the focused one that is not being answered.
    const all = items();
    if (elt.closest("#bulk-form")) {
      answering = new Set(selected().map((box) => box.value));
    } else {
      const li = elt.closest(".item");
      answering = new Set(li ? [li.dataset.key] : []);
    }
    const cur = focused();
    const idx = cur ? all.indexOf(cur) : 0;
    const keep = (el) => !answering.has(el.dataset.key);
    const next = all.slice(idx).find(keep) || all.slice(0, idx).reverse().find(keep);
    wantFocus = next ? next.dataset.key : null;
  });

  document.body.addEventListener("htmx:afterRequest", (e) => {
    // A failed request never settles: let the keys work again.
    if (!e.detail.successful) {
      busy = false;
      answering = new Set();
    }
  });

  // After settling: htmx restores the attributes of the new content while it settles.
  document.body.addEventListener("htmx:afterSettle", (e) => {
    if (e.detail.target !== body || e.target !== body) return;
    busy = false;
    answering = new Set();
    afterRender();
  });

  // Leaving the page gives the claimed item back at once instead of after the claim runs out.
  window.addEventListener("pagehide", () => {
    if (!claimedId || !claimed || !navigator.sendBeacon) return;
    const data = new FormData();
    data.append("release", claimed.entry_id);
    data.append("release_agent", claimed.agent);
    data.append("csrfmiddlewaretoken", csrf());
    navigator.sendBeacon(claimUrl, data);
  });

  afterRender();
})();
