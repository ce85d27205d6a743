// The public invoice payment page: method and gateway choice, card input helpers, the
// amount for partial payments, and the Stripe.js flow. No inline scripts: the page hands
// this file what it needs (publishable key, Stripe.js URL) in data- attributes.
(function () {
  "use strict";

  const csrfToken = () => {
    const input = document.querySelector("input[name=csrf_token]");
    return input ? input.value : "";
  };

  // --- choosing a method, then a gateway ---------------------------------------------------

  function activePanels() {
    return Array.from(document.querySelectorAll("[data-gateway-panel]")).filter(function (panel) {
      return !panel.hidden && !panel.closest("[data-method-panel][hidden]");
    });
  }

  function afterSwitch() {
    activePanels().forEach(function (panel) {
      const form = panel.querySelector("[data-stripe-form]");
      if (form) setupStripe(form);
    });
  }

  document.addEventListener("change", function (event) {
    const target = event.target;
    if (target.matches("[data-method-choice]")) {
      document.querySelectorAll("[data-method-panel]").forEach(function (panel) {
        panel.hidden = panel.dataset.methodPanel !== target.value;
      });
      afterSwitch();
    } else if (target.matches("[data-gateway-choice]")) {
      const group = target.closest("[data-method-panel]");
      group.querySelectorAll("[data-gateway-panel]").forEach(function (panel) {
        panel.hidden = panel.dataset.gatewayPanel !== target.value;
      });
      afterSwitch();
    }
  });

  // --- the amount (partial payments) ------------------------------------------------------

  const amountInput = document.querySelector("[data-amount-input]");

  function formatAmount(raw, currency) {
    const value = Number(String(raw).replace(/[,\s]/g, ""));
    if (!raw || !isFinite(value) || value <= 0) return null;
    try {
      return new Intl.NumberFormat("en-US", { style: "currency", currency: currency }).format(value);
    } catch (e) {
      return null;
    }
  }

  function syncAmount() {
    if (!amountInput) return;
    document.querySelectorAll("[data-amount-mirror]").forEach(function (input) {
      input.value = amountInput.value.trim();
    });
    const shown = formatAmount(amountInput.value, amountInput.dataset.currency);
    if (!shown) return;
    document.querySelectorAll("[data-pay-label]").forEach(function (label) {
      label.textContent = (label.dataset.prefix || "Pay") + " " + shown;
    });
  }

  if (amountInput) {
    amountInput.addEventListener("input", syncAmount);
    syncAmount();
  }

  // --- card input helpers (the sandbox's form) ----------------------------------------------

  document.addEventListener("input", function (event) {
    const input = event.target;
    if (input.matches("[data-card-number]")) {
      const digits = input.value.replace(/\D/g, "").slice(0, 19);
      const grouped = digits.replace(/(\d{4})(?=\d)/g, "$1 ");
      if (grouped !== input.value) input.value = grouped;
    } else if (input.matches("[data-card-expiry]")) {
      const digits = input.value.replace(/\D/g, "").slice(0, 4);
      const typedSlash = event.inputType !== "deleteContentBackward";
      const formatted = digits.length > 2 || (digits.length === 2 && typedSlash)
        ? digits.slice(0, 2) + "/" + digits.slice(2)
        : digits;
      if (formatted !== input.value) input.value = formatted;
    }
  });

  function busy(form, on) {
    const button = form.querySelector("[data-pay-submit]");
    if (!button) return;
    button.disabled = on;
    button.classList.toggle("is-busy", on);
    button.setAttribute("aria-busy", on ? "true" : "false");
  }

  // Plain forms (sandbox card, hosted redirects): one submit, with a busy button.
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!form.matches("[data-pay-form]")) return;
    syncAmount();
    if (form.dataset.submitted) {
      event.preventDefault();
      return;
    }
    form.dataset.submitted = "1";
    // Disable after the browser has taken the form's values.
    setTimeout(function () { busy(form, true); }, 0);
  });

  // Back from the gateway with the browser's back button: the page may come from the cache.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    document.querySelectorAll("[data-pay-form], [data-stripe-form]").forEach(function (form) {
      delete form.dataset.submitted;
      busy(form, false);
    });
  });

  // --- Stripe Elements ------------------------------------------------------------------------

  const scripts = {};

  function loadScript(url) {
    if (!scripts[url]) {
      scripts[url] = new Promise(function (resolve, reject) {
        const script = document.createElement("script");
        script.src = url;
        script.async = true;
        script.onload = resolve;
        script.onerror = function () { reject(new Error("Stripe.js could not be loaded")); };
        document.head.appendChild(script);
      });
    }
    return scripts[url];
  }

  const stripes = new WeakMap();

  function stripeError(form, message) {
    const box = form.querySelector("[data-stripe-error]");
    if (!box) return;
    box.textContent = message || "";
    box.hidden = !message;
  }

  function setupStripe(form) {
    if (form.dataset.stripeReady) return;
    form.dataset.stripeReady = "1";
    const mount = form.querySelector("[data-stripe-mount]");
    loadScript(form.dataset.stripeJs).then(function () {
      const stripe = window.Stripe(form.dataset.publishableKey);
      const card = stripe.elements().create("card");
      mount.replaceChildren();
      card.mount(mount);
      stripes.set(form, { stripe: stripe, card: card });
    }).catch(function () {
      mount.replaceChildren();
      stripeError(form, "The secure card fields could not be loaded. Check your connection and reload the page.");
    });
  }

  async function postJson(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "X-CSRF-Token": csrfToken(),
      },
      body: JSON.stringify(body),
    });
    let data = {};
    try { data = await response.json(); } catch (e) { data = {}; }
    return { ok: response.ok, status: response.status, data: data };
  }

  function messageOf(answer) {
    if (answer.data && answer.data.error) return answer.data.error;
    if (answer.status === 403) return "This page has expired. Reload it and try again.";
    return "Something went wrong (" + answer.status + "). Please try again.";
  }

  async function payWithStripe(form) {
    const state = stripes.get(form);
    if (!state) {
      stripeError(form, "The card fields are still loading. Please wait a moment.");
      return;
    }
    stripeError(form, "");
    busy(form, true);
    try {
      const tokenized = await state.stripe.createToken(state.card);
      if (!tokenized || tokenized.error || !tokenized.token) {
        const error = tokenized && tokenized.error;
        stripeError(form, (error && error.message) || "Please check your card details.");
        busy(form, false);
        return;
      }
      syncAmount();
      const fields = new FormData(form);
      const answer = await postJson(form.action, {
        nonce: fields.get("nonce"),
        gateway_id: fields.get("gateway_id"),
        method_type: fields.get("method_type"),
        amount: fields.get("amount") || "",
        payment_method: tokenized.token.id,
      });
      if (!answer.ok) {
        stripeError(form, messageOf(answer));
        busy(form, false);
        return;
      }
      const next = answer.data.next_action;
      if (next && next.type === "stripe_sdk") {
        // 3-D Secure in Stripe.js; paygate then reads the outcome from Stripe itself.
        try { await state.stripe.confirmCardPayment(next.client_secret); } catch (e) { /* read on the server */ }
        const done = await postJson(next.complete_url, {});
        window.location.assign((done.ok && done.data.redirect_url) || answer.data.redirect_url);
        return;
      }
      window.location.assign(answer.data.redirect_url);
    } catch (e) {
      stripeError(form, "paygate could not be reached. Check your connection and try again.");
      busy(form, false);
    }
  }

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!form.matches("[data-stripe-form]")) return;
    event.preventDefault();
    if (form.querySelector("[data-pay-submit]").disabled) return;
    payWithStripe(form);
  });

  // --- small things -----------------------------------------------------------------------------

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-print]")) window.print();
  });

  document.addEventListener("DOMContentLoaded", function () {
    afterSwitch();
    // Say what happened: a result, or the first field to correct.
    const first = document.querySelector("[aria-invalid=true]") ||
      document.querySelector("[data-focus-result]") ||
      document.querySelector(".pay-errors");
    if (first) first.focus();
  });
})();
