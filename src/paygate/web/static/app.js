// paygate web UI behaviour. All scripting lives here (no inline scripts or handlers), so a
// strict Content-Security-Policy can forbid them.
(function () {
  "use strict";

  const modal = () => document.getElementById("modal");
  const modalBody = () => document.getElementById("modal-body");
  let modalOpener = null;
  let lastFocusedId = null;

  const FOCUSABLE = "input:not([type=hidden]):not([disabled]), select:not([disabled]), textarea, button:not([disabled]), a[href]";

  function focusFirst(container) {
    if (!container) return;
    const target =
      container.querySelector("[aria-invalid=true]") ||
      container.querySelector("[data-focus-first]") ||
      container.querySelector(".type-card") ||
      container.querySelector("form " + FOCUSABLE.split(",").join(", form ")) ||
      container.querySelector(FOCUSABLE);
    if (target) target.focus();
  }

  // --- modal ---------------------------------------------------------------------------

  function openModal() {
    const dialog = modal();
    if (!dialog) return;
    if (!dialog.open) {
      modalOpener = document.activeElement;
      dialog.showModal();
    }
    focusFirst(modalBody());
  }

  function closeModal() {
    const dialog = modal();
    if (dialog && dialog.open) dialog.close();
  }

  document.addEventListener("close", function (event) {
    if (event.target !== modal()) return;
    modalBody().replaceChildren();
    // Back to the button that opened it (it may have been re-rendered: find it by id).
    const opener = modalOpener && (document.getElementById(modalOpener.id) || modalOpener);
    if (opener && document.contains(opener)) opener.focus();
    modalOpener = null;
  }, true);

  document.addEventListener("click", function (event) {
    const closer = event.target.closest("[data-close-modal]");
    if (closer && closer.closest("dialog")) {
      event.preventDefault();
      closeModal();
      return;
    }
    // A click on the backdrop (outside the dialog's box) closes it too.
    const dialog = modal();
    if (dialog && event.target === dialog) {
      const box = dialog.getBoundingClientRect();
      const inside = event.clientX >= box.left && event.clientX <= box.right &&
        event.clientY >= box.top && event.clientY <= box.bottom;
      if (!inside) closeModal();
    }
  });

  document.body.addEventListener("pg:close-modal", closeModal);

  // --- confirmation dialog ---------------------------------------------------------------

  function confirmWith(source) {
    return new Promise(function (resolve) {
      const dialog = document.getElementById("confirm-dialog");
      if (!dialog) { resolve(window.confirm(source.dataset.confirm)); return; }
      const opener = document.activeElement;
      dialog.querySelector("#confirm-title").textContent = source.dataset.confirmTitle || "Are you sure?";
      dialog.querySelector("#confirm-message").textContent = source.dataset.confirm;
      dialog.querySelector("#confirm-ok").textContent = source.dataset.confirmAction || "Confirm";
      dialog.returnValue = "";
      dialog.addEventListener("close", function done() {
        dialog.removeEventListener("close", done);
        const ok = dialog.returnValue === "confirm";
        if (!ok && opener && document.contains(opener)) opener.focus();
        resolve(ok);
      });
      dialog.showModal();
    });
  }

  document.addEventListener("htmx:confirm", function (event) {
    const source = event.detail.elt.closest("[data-confirm]");
    if (!source) return;
    event.preventDefault();
    confirmWith(source).then(function (ok) {
      if (ok) event.detail.issueRequest(true);
    });
  });

  // --- notices ------------------------------------------------------------------------------

  // Every notice fades: errors after longer, and none while pointed at or focused, so it can
  // be read and dismissed. The region is announced (aria-live) as notices arrive.
  const NOTICE_MS = { error: 12000, success: 6000, info: 6000 };

  function dismissNotice(notice) {
    if (!notice.isConnected || notice.classList.contains("is-leaving")) return;
    const hadFocus = notice.contains(document.activeElement);
    notice.classList.add("is-leaving");
    setTimeout(function () {
      notice.remove();
      if (hadFocus) { const main = document.getElementById("main"); if (main) main.focus(); }
    }, 300);
  }

  function armNotice(notice) {
    if (notice.dataset.armed) return;
    notice.dataset.armed = "1";
    const kind = ["error", "success", "info"].find(function (k) { return notice.classList.contains("notice-" + k); }) || "info";
    let left = NOTICE_MS[kind];
    let started = Date.now();
    let timer = null;
    const run = function () { started = Date.now(); timer = setTimeout(function () { dismissNotice(notice); }, left); };
    const hold = function () { if (timer) { clearTimeout(timer); timer = null; left = Math.max(left - (Date.now() - started), 2000); } };
    const resume = function () {
      if (!timer && !notice.matches(":hover") && !notice.contains(document.activeElement)) run();
    };
    notice.addEventListener("pointerenter", hold);
    notice.addEventListener("focusin", hold);
    notice.addEventListener("pointerleave", resume);
    notice.addEventListener("focusout", function () { setTimeout(resume, 0); });
    run();
  }

  // The room toasts take, so the sidebar (or the page) keeps as much free below its content.
  function measureNotices() {
    const region = document.getElementById("notices");
    const height = region && region.children.length ? region.offsetHeight + 12 : 0;
    document.documentElement.style.setProperty("--notices-h", height + "px");
  }
  if (window.ResizeObserver) {
    document.addEventListener("DOMContentLoaded", function () {
      const region = document.getElementById("notices");
      if (region) new ResizeObserver(measureNotices).observe(region);
    });
  }

  function armNotices(root) {
    (root || document).querySelectorAll("[data-notice]").forEach(armNotice);
    // Newest first; a burst of actions keeps only the latest few on screen.
    const region = document.getElementById("notices");
    if (region) Array.from(region.querySelectorAll("[data-notice]")).slice(3).forEach(function (n) { n.remove(); });
  }

  function showNotice(kind, text) {
    const region = document.getElementById("notices");
    if (!region) return;
    const notice = document.createElement("div");
    notice.className = "notice notice-" + kind;
    notice.setAttribute("role", kind === "error" ? "alert" : "status");
    notice.dataset.notice = "";
    const icon = document.createElement("span");
    icon.className = "notice-icon";
    icon.setAttribute("aria-hidden", "true");
    const p = document.createElement("p");
    p.textContent = text;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "notice-close";
    close.dataset.dismiss = "";
    close.setAttribute("aria-label", "Dismiss notice");
    close.textContent = "\u00d7";
    notice.append(icon, p, close);
    region.prepend(notice);
    armNotices(region);
  }

  document.addEventListener("click", function (event) {
    const dismiss = event.target.closest("[data-dismiss]");
    if (dismiss) dismissNotice(dismiss.closest("[data-notice]"));
  });

  // --- the sidebar as a drawer on phones, and the account menu ------------------------------

  function setMenu(open) {
    const sidebar = document.getElementById("sidebar");
    const button = document.getElementById("menu-button");
    const backdrop = document.querySelector(".sidebar-backdrop");
    if (!sidebar || !button) return;
    sidebar.classList.toggle("is-open", open);
    button.setAttribute("aria-expanded", open ? "true" : "false");
    if (backdrop) backdrop.hidden = !open;
    if (open) {
      // Once the drawer is visible (a hidden element cannot take focus).
      requestAnimationFrame(function () {
        const first = sidebar.querySelector(".side-nav a[aria-current=page]") || sidebar.querySelector(".side-nav a");
        if (first) first.focus();
      });
    } else if (sidebar.contains(document.activeElement)) {
      button.focus();
    }
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-menu-open]")) { setMenu(true); return; }
    if (event.target.closest("[data-menu-close]")) { setMenu(false); return; }
    // A click outside the open account menu closes it.
    document.querySelectorAll("details[data-account-menu][open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.open = false;
    });
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    const menu = document.querySelector("details[data-account-menu][open]");
    if (menu) {
      menu.open = false;
      menu.querySelector("summary").focus();
      return;
    }
    const sidebar = document.getElementById("sidebar");
    if (sidebar && sidebar.classList.contains("is-open")) setMenu(false);
  });

  // Growing past the phone width with the drawer open: back to the plain sidebar.
  if (window.matchMedia) {
    window.matchMedia("(min-width: 901px)").addEventListener("change", function (event) {
      if (event.matches) setMenu(false);
    });
  }

  // --- copy to clipboard --------------------------------------------------------------------

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const input = document.querySelector(button.dataset.copy);
    if (!input) return;
    const label = button.querySelector("[data-copy-label]");
    const done = function () {
      if (label) {
        label.textContent = "Copied";
        setTimeout(function () { label.textContent = "Copy"; }, 2000);
      }
    };
    input.select();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(done, function () { document.execCommand("copy"); done(); });
    } else {
      document.execCommand("copy");
      done();
    }
  });

  // --- role selects submit on change (the Save button is the no-JS fallback) --------------

  function armAutosubmit(root) {
    (root || document).querySelectorAll("form[data-autosubmit]").forEach(function (form) {
      form.querySelectorAll("[data-save]").forEach(function (b) { b.hidden = true; });
    });
  }

  document.addEventListener("change", function (event) {
    const form = event.target.closest("form[data-autosubmit]");
    if (form) form.requestSubmit();
  });

  // --- htmx lifecycle ------------------------------------------------------------------------

  document.addEventListener("htmx:beforeRequest", function () {
    const active = document.activeElement;
    lastFocusedId = active && active.id ? active.id : null;
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    const xhr = event.detail.xhr;
    if (xhr.status >= 400 && xhr.status !== 422) {
      const type = xhr.getResponseHeader("content-type") || "";
      // Only our HTML notices go into the page; anything else becomes a plain message.
      if (!type.startsWith("text/html")) {
        event.detail.shouldSwap = false;
        showNotice("error", xhr.status === 413 ? "That was too large to send." : "Something went wrong (" + xhr.status + "). Please try again.");
      }
    }
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    // After an outerHTML swap the target is the old, detached element: find its successor.
    let target = event.detail.target;
    if (target && !target.isConnected && target.id) target = document.getElementById(target.id);
    armNotices(document.getElementById("notices"));
    if (target) armAutosubmit(target);
    const dialog = modal();
    if (target && target.id === "modal-body") {
      openModal();
      return;
    }
    if (dialog && dialog.open && target && dialog.contains(target)) {
      // A form came back with errors: go to the first one.
      focusFirst(modalBody());
      return;
    }
    if (target && target.id === "notices") return;
    // A swap replaced the focused control (a switch, a button): put focus back on its twin.
    if (lastFocusedId && (document.activeElement === document.body || !document.activeElement)) {
      const again = document.getElementById(lastFocusedId);
      if (again) again.focus();
    }
    const first = target && target.querySelector && target.querySelector("[data-focus-first], [aria-invalid=true]");
    if (first) first.focus();
  });

  document.addEventListener("htmx:sendError", function () {
    showNotice("error", "paygate could not be reached. Check your connection and try again.");
  });

  document.addEventListener("DOMContentLoaded", function () {
    armNotices(document);
    armAutosubmit(document);
  });
})();

// === invoices: line items on the new-invoice form (invoice_pages.py) =========================
// Without JavaScript, "Add line" and "Remove" are submit buttons the server answers; with it,
// they work in place. The running total is a preview: the server computes the real one.
(function () {
  "use strict";

  function exponentOf(currency) {
    try {
      return new Intl.NumberFormat("en-US", { style: "currency", currency: currency }).resolvedOptions().maximumFractionDigits;
    } catch (e) {
      return null;
    }
  }

  function format(minor, currency, digits) {
    const value = minor / Math.pow(10, digits);
    try {
      return new Intl.NumberFormat("en-US", { style: "currency", currency: currency }).format(value);
    } catch (e) {
      return value.toFixed(digits);
    }
  }

  // "12.50" -> 1250 (minor units) with the currency's digits; null when it is not an amount.
  function toMinor(raw, digits) {
    const text = raw.replace(/[,\s]/g, "");
    if (!/^(\d{1,15}(\.\d*)?|\.\d+)$/.test(text)) return null;
    const parts = text.split(".");
    const fraction = parts[1] || "";
    if (fraction.replace(/0+$/, "").length > digits) return null;
    return parseInt(parts[0] || "0", 10) * Math.pow(10, digits) + parseInt((fraction + "0".repeat(digits)).slice(0, digits) || "0", 10);
  }

  function renumber(form) {
    form.querySelectorAll("[data-lines] [data-line]").forEach(function (row, index) {
      row.querySelectorAll("input").forEach(function (input) {
        const part = input.id.replace(/^f-line_items-[^-]+-/, "");
        const oldId = input.id;
        input.id = "f-line_items-" + index + "-" + part;
        const label = row.querySelector('label[for="' + oldId + '"]');
        if (label) {
          label.htmlFor = input.id;
          label.textContent = label.dataset.lineLabel + " " + (index + 1);
        }
      });
      const remove = row.querySelector("[data-remove-line]");
      if (remove) {
        remove.value = "remove_line:" + index;
        remove.setAttribute("aria-label", "Remove line " + (index + 1));
      }
    });
    const rows = form.querySelectorAll("[data-lines] [data-line]");
    rows.forEach(function (row) {
      const remove = row.querySelector("[data-remove-line]");
      if (remove) remove.disabled = rows.length <= 1;
    });
  }

  function recompute(form) {
    const currencyInput = form.querySelector("[data-currency]");
    const currency = (currencyInput.value || "").trim().toUpperCase();
    const digits = /^[A-Z]{3}$/.test(currency) ? exponentOf(currency) : null;
    const totalOut = form.querySelector("[data-invoice-total]");
    let total = 0;
    let complete = digits !== null;
    form.querySelectorAll("[data-lines] [data-line]").forEach(function (row) {
      const out = row.querySelector("[data-line-amount]");
      const price = row.querySelector("[data-line-price]");
      const quantity = row.querySelector("[data-line-quantity]").value.trim();
      if (digits !== null) price.placeholder = digits === 0 ? "0" : "0." + "0".repeat(digits);
      const minor = digits === null ? null : toMinor(price.value, digits);
      const qty = /^\d{1,9}$/.test(quantity) ? parseInt(quantity, 10) : null;
      if (minor === null || qty === null) {
        out.textContent = "—";
        if (price.value.trim() || digits === null) complete = false;
        return;
      }
      total += minor * qty;
      out.textContent = format(minor * qty, currency, digits);
    });
    totalOut.textContent = complete && total > 0 ? format(total, currency, digits) + " " + currency : "—";
  }

  function arm(form) {
    if (form.dataset.armed) return;
    form.dataset.armed = "1";
    renumber(form);
    recompute(form);
  }

  document.addEventListener("click", function (event) {
    const add = event.target.closest("[data-add-line]");
    const remove = event.target.closest("[data-remove-line]");
    const form = (add || remove) && (add || remove).closest("form[data-invoice-form]");
    if (!form) return;
    event.preventDefault();
    const lines = form.querySelector("[data-lines]");
    if (add) {
      const template = form.querySelector("#line-template");
      const row = template.content.querySelector("[data-line]").cloneNode(true);
      lines.appendChild(row);
      renumber(form);
      recompute(form);
      row.querySelector("input").focus();
      return;
    }
    const row = remove.closest("[data-line]");
    if (lines.querySelectorAll("[data-line]").length <= 1) return;
    const next = row.nextElementSibling || row.previousElementSibling;
    row.remove();
    renumber(form);
    recompute(form);
    if (next) next.querySelector("input").focus();
  });

  document.addEventListener("input", function (event) {
    const form = event.target.closest("form[data-invoice-form]");
    if (form) recompute(form);
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-invoice-form]").forEach(arm);
    const invalid = document.querySelector("form[data-invoice-form] [aria-invalid=true]");
    if (invalid) invalid.focus();
  });
})();
// === end invoices ==========================================================================
