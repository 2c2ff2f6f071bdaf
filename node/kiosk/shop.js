// The shopper's screens: catalog and cart, checkout (sign in or register inline, pay, place the
// order), the confirmation and the order history.

import { ApiError, Unreachable, get, getAll, newKey, post, whenReachable } from './api.js';
import { dateTime, money, t } from './i18n.js';
import { announce, clear, field, h, uid } from './ui.js';

// ---- catalog and cart ---------------------------------------------------------------------

export function shopScreen(ctx) {
  const { app } = ctx;
  const list = h('div', { class: 'products', id: 'products', 'aria-busy': 'true' }, t('loading'));
  const [searchField, search] = field(t('search'), {
    type: 'search',
    name: 'q',
    value: app.query,
    placeholder: t('searchPlaceholder'),
    autocomplete: 'off',
    enterkeyhint: 'search',
  });
  let debounce;
  search.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      app.query = search.value;
      loadProducts(ctx, list);
    }, 250);
  });
  const cats = h('div', { class: 'categories', role: 'group', 'aria-label': t('categories') });
  const cart = h('section', { class: 'cart', 'aria-labelledby': 'cart-title' });
  renderCart(ctx, cart);
  ctx.onCartChange = () => renderCart(ctx, cart);
  loadCategories(ctx, cats, list);
  loadProducts(ctx, list);
  // Whether units elsewhere in the chain can be sold here depends on the link.
  ctx.onStatusChange = () => loadProducts(ctx, list);
  return h(
    'div',
    { class: 'shop' },
    h(
      'section',
      { class: 'catalog', 'aria-labelledby': 'screen-title' },
      h('h1', { id: 'screen-title', tabindex: '-1' }, t('products')),
      h('form', { class: 'search', role: 'search', onsubmit: (e) => e.preventDefault() }, searchField),
      cats,
      list,
    ),
    cart,
  );
}

async function loadCategories(ctx, container, list) {
  try {
    const page = await get('/v1/categories?page_size=100');
    clear(container);
    const button = (label, id) =>
      h(
        'button',
        {
          type: 'button',
          class: 'chip',
          'aria-pressed': String(ctx.app.category === id),
          onclick: () => {
            ctx.app.category = id;
            for (const b of container.querySelectorAll('button')) b.setAttribute('aria-pressed', 'false');
            container.children[[null, ...page.items.map((c) => c.id)].indexOf(id)]?.setAttribute('aria-pressed', 'true');
            loadProducts(ctx, list);
          },
        },
        label,
      );
    container.append(button(t('allCategories'), null), ...page.items.map((c) => button(c.name, c.id)));
  } catch (e) {
    if (!(e instanceof Unreachable)) ctx.showError(e);
  }
}

export async function loadProducts(ctx, list) {
  const { app } = ctx;
  const params = new URLSearchParams();
  if (app.query.trim()) params.set('q', app.query.trim());
  if (app.category) params.set('category', app.category);
  const asked = params.toString();
  list.dataset.query = asked;
  let products;
  try {
    products = await getAll(asked ? `/v1/products?${asked}` : '/v1/products', 10);
  } catch (e) {
    if (!(e instanceof Unreachable)) ctx.showError(e);
    return;
  }
  if (list.dataset.query !== asked) return; // a newer search is under way
  clear(list);
  list.setAttribute('aria-busy', 'false');
  if (!products.length) list.append(h('p', { class: 'empty' }, t('noProducts')));
  for (const p of products) list.append(productCard(ctx, p));
}

export function stockText(stock) {
  if (stock.available_here > 0) return t('here', { n: stock.available_here });
  if (stock.global > 0) return t('outHereInChain', { m: stock.global });
  return t('outEverywhere');
}

function productCard(ctx, p) {
  const nameId = uid('p');
  const inCart = ctx.app.cart.get(p.id);
  return h(
    'article',
    { class: 'product', 'aria-labelledby': nameId, 'data-product-id': p.id },
    h('h2', { id: nameId }, p.name),
    p.description ? h('p', { class: 'description' }, p.description) : null,
    h('p', { class: 'price' }, money(p.price.amount, p.price.currency)),
    h('p', { class: p.stock.available_here > 0 ? 'stock' : 'stock out' }, stockText(p.stock)),
    h(
      'button',
      {
        type: 'button',
        class: 'primary',
        'aria-describedby': nameId,
        // Units elsewhere in the chain can still be sold here while the hub is reachable (the
        // node asks it for more); offline, only this store's own units can.
        disabled: !(p.stock.available_here > 0 || (ctx.app.status?.hub === 'connected' && p.stock.global > 0)),
        onclick: () => {
          const line = ctx.app.cart.get(p.id) || { product: p, quantity: 0 };
          line.product = p;
          line.quantity += 1;
          ctx.app.cart.set(p.id, line);
          ctx.cartChanged();
          announce(t('added', { name: p.name }));
        },
      },
      t('addToCart'),
      inCart ? ` (${inCart.quantity})` : null,
    ),
  );
}

function cartTotal(cart) {
  let amount = 0;
  let currency = null;
  let count = 0;
  for (const { product, quantity } of cart.values()) {
    amount += product.price.amount * quantity;
    currency = product.price.currency;
    count += quantity;
  }
  return { amount, currency, count };
}

export function renderCart(ctx, root, { readOnly = false } = {}) {
  const { cart } = ctx.app;
  clear(root);
  root.append(h('h2', { id: readOnly ? 'summary-title' : 'cart-title' }, t('cart')));
  if (!cart.size) {
    root.append(h('p', { class: 'empty' }, t('cartEmpty')));
    return;
  }
  const lines = h('ul', { class: 'lines' });
  for (const [id, line] of cart) {
    const { product, quantity } = line;
    const row = h('li', { class: 'line' }, h('span', { class: 'line-name' }, product.name));
    if (readOnly) {
      row.append(h('span', { class: 'line-qty' }, `× ${quantity}`));
    } else {
      const [qtyField, qty] = field(t('quantity'), {
        type: 'number',
        inputmode: 'numeric',
        min: '1',
        max: '10000',
        step: '1',
        value: String(quantity),
        'aria-describedby': undefined,
      });
      qty.addEventListener('change', () => {
        const n = Math.floor(Number(qty.value));
        if (Number.isFinite(n) && n >= 1) {
          line.quantity = Math.min(n, 10000);
        } else {
          cart.delete(id);
        }
        ctx.cartChanged();
      });
      row.append(
        qtyField,
        h(
          'button',
          {
            type: 'button',
            class: 'secondary',
            'aria-label': t('removeItem', { name: product.name }),
            onclick: () => {
              cart.delete(id);
              ctx.cartChanged();
            },
          },
          t('remove'),
        ),
      );
    }
    row.append(h('span', { class: 'line-total' }, money(product.price.amount * quantity, product.price.currency)));
    lines.append(row);
  }
  const total = cartTotal(cart);
  root.append(
    lines,
    h(
      'p',
      { class: 'total' },
      h('span', {}, `${t('total')} (${t(total.count === 1 ? 'item' : 'items', { n: total.count })})`),
      h('strong', {}, money(total.amount, total.currency)),
    ),
  );
  if (!readOnly) {
    root.append(h('button', { type: 'button', class: 'primary big', onclick: () => ctx.go('checkout') }, t('checkout')));
  }
}

// ---- checkout ------------------------------------------------------------------------------

export function checkoutScreen(ctx) {
  // Said where the shopper is looking: under the form that failed.
  const errors = h('div', { class: 'errors', role: 'alert', id: 'checkout-errors' });
  const summary = h('section', { class: 'summary', 'aria-labelledby': 'summary-title' });
  renderCart(ctx, summary, { readOnly: true });
  const account = h('section', { class: 'panel', 'aria-labelledby': 'account-title' });
  const payment = h('section', { class: 'panel', 'aria-labelledby': 'payment-title' });
  const draw = () => {
    drawAccount(ctx, account, errors, draw);
    drawPayment(ctx, payment, errors);
    (ctx.app.user ? payment : account).querySelector('form')?.append(errors);
  };
  draw();
  return h(
    'div',
    { class: 'checkout' },
    h('h1', { id: 'screen-title', tabindex: '-1' }, t('checkout')),
    h('button', { type: 'button', class: 'secondary', onclick: () => ctx.go('shop') }, t('back')),
    summary,
    account,
    payment,
  );
}

function drawAccount(ctx, root, errors, redraw) {
  clear(root);
  root.append(h('h2', { id: 'account-title' }, t('account')));
  if (ctx.app.user) {
    root.append(h('p', { class: 'signed-in' }, t('signedInAs', { name: ctx.app.user.name })));
    return;
  }
  const [emailField, email] = field(t('email'), { type: 'email', name: 'email', autocomplete: 'off', required: true });
  const [nameField, name] = field(t('name'), { type: 'text', name: 'name', autocomplete: 'off' });
  const [passwordField, password] = field(t('password'), {
    type: 'password',
    name: 'password',
    autocomplete: 'off',
    required: true,
  });
  const submit = async (register) => {
    clear(errors);
    try {
      const answer = register
        ? await post('/v1/users', { email: email.value, name: name.value, password: password.value })
        : await post('/v1/auth/login', { email: email.value, password: password.value });
      ctx.signIn(answer);
      redraw();
      root.parentElement?.querySelector('#payment-title')?.focus();
    } catch (e) {
      ctx.showError(e, errors);
    }
  };
  const form = h(
    'form',
    {
      class: 'account-form',
      onsubmit: (e) => {
        e.preventDefault();
        submit(e.submitter?.value === 'register');
      },
    },
    h('p', { class: 'hint' }, t('accountHint')),
    emailField,
    nameField,
    passwordField,
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'submit', class: 'primary', value: 'register' }, t('register')),
      h('button', { type: 'submit', class: 'secondary', value: 'signin' }, t('signIn')),
    ),
  );
  root.append(form);
}

function drawPayment(ctx, root, errors) {
  clear(root);
  root.append(h('h2', { id: 'payment-title', tabindex: '-1' }, t('payment')));
  if (!ctx.app.user) {
    root.append(h('p', { class: 'hint' }, t('needAccount')));
    return;
  }
  const group = uid('method');
  const radio = (value, label, checked) => {
    const id = uid('r');
    return h(
      'div',
      { class: 'choice' },
      h('input', { type: 'radio', name: group, id, value, checked }),
      h('label', { for: id }, label),
    );
  };
  const [tokenField, cardToken] = field(t('cardToken'), { type: 'text', name: 'card_token', autocomplete: 'off' });
  tokenField.hidden = true;
  const limits = h('p', { class: 'hint', id: 'offline-limits' });
  const showLimits = () => {
    const status = ctx.app.status;
    limits.textContent =
      status && status.hub === 'disconnected'
        ? t('cardOfflineLimits', {
          limit: money(status.offline_card_limit, status.currency),
          total: money(status.offline_card_total, status.currency),
        })
        : '';
  };
  showLimits();
  // The link may go down (or come back) while the shopper is here: only the hint changes.
  ctx.onStatusChange = showLimits;
  const methods = h(
    'fieldset',
    { class: 'methods' },
    h('legend', {}, t('payBy')),
    radio('cash', t('cash'), true),
    radio('card', t('card'), false),
  );
  methods.addEventListener('change', () => {
    tokenField.hidden = methods.querySelector('input:checked')?.value !== 'card';
  });
  // One key per checkout: a retry after the node came back cannot place a second order.
  const keys = { order: newKey(), payment: newKey() };
  const place = h(
    'button',
    {
      type: 'submit',
      class: 'primary big',
    },
    t('placeOrder'),
  );
  const form = h(
    'form',
    {
      onsubmit: async (e) => {
        e.preventDefault();
        clear(errors);
        place.disabled = true;
        announce(t('placing'));
        const method = methods.querySelector('input:checked')?.value || 'cash';
        try {
          const orderId = await placeOrder(ctx, keys, method, cardToken.value);
          ctx.app.cart.clear();
          ctx.app.lastOrderId = orderId;
          ctx.go('confirmation');
        } catch (err) {
          place.disabled = false;
          if (err instanceof ApiError && err.problem.type === 'urn:edgecart:problem:insufficient-stock') {
            // No order exists: a new attempt (after the cart changed) is a new order.
            keys.order = newKey();
            keys.payment = newKey();
            const p = err.problem;
            const line = ctx.app.cart.get(p.product_id);
            errors.append(
              h(
                'p',
                { class: 'too-many' },
                t('tooMany', { n: p.available_here, m: p.global, name: line ? line.product.name : p.product_id }),
              ),
            );
          } else {
            ctx.showError(err, errors);
          }
          errors.scrollIntoView({ block: 'center' });
        }
      },
    },
    methods,
    tokenField,
    limits,
    place,
  );
  root.append(form);
}

async function placeOrder(ctx, keys, method, cardToken) {
  if (!keys.orderId) {
    const items = [...ctx.app.cart.entries()].map(([product_id, l]) => ({ product_id, quantity: l.quantity }));
    const order = await whenReachable(() => post('/v1/orders', { items }, { key: keys.order }));
    keys.orderId = order.id;
  }
  const body = method === 'card' ? { method, card_token: cardToken } : { method };
  await whenReachable(() => post(`/v1/orders/${keys.orderId}/payments`, body, { key: keys.payment }));
  return keys.orderId;
}

// ---- confirmation and history -------------------------------------------------------------

export function statusText(status) {
  return t(`status_${status}`);
}

/** The last 8 hex digits of an id: UUIDv7s made close together share their leading (time)
 *  digits, the trailing ones are random. */
export function shortId(id) {
  return id.replace(/-/g, '').slice(-8);
}

function orderSummary(order, { heading = 'h2' } = {}) {
  const pay = order.payments[order.payments.length - 1];
  let note = null;
  if (pay?.method === 'card' && pay.status === 'failed') {
    // The hub cancels an order whose card failed; say why.
    note = t('cardFailed', { reason: pay.failure_reason || '' });
  } else if (order.status === 'pending_payment' && pay?.method === 'card') {
    note = pay.status === 'authorized_offline' ? t('cardOffline') : t('cardPending');
  }
  return h(
    'article',
    { class: 'order', 'data-order-id': order.id },
    h(heading, {}, t('orderNumber', { id: shortId(order.id) })),
    h('p', { class: 'placed' }, t('placedAt', { at: dateTime(order.created_at) })),
    h(
      'ul',
      { class: 'lines' },
      order.items.map((i) =>
        h(
          'li',
          { class: 'line' },
          h('span', { class: 'line-name' }, i.product_name),
          h('span', { class: 'line-qty' }, `× ${i.quantity}`),
          h('span', { class: 'line-total' }, money(i.line_total.amount, i.line_total.currency)),
        ),
      ),
    ),
    h('p', { class: 'total' }, h('span', {}, t('total')), h('strong', {}, money(order.total.amount, order.total.currency))),
    h(
      'p',
      { class: 'order-status' },
      `${t('orderStatus')}: `,
      h('strong', { class: `status status-${order.status}`, 'data-status': order.status }, statusText(order.status)),
    ),
    note ? h('p', { class: 'hint' }, note) : null,
  );
}

export function confirmationScreen(ctx) {
  const body = h('div', { class: 'confirmation-body', 'aria-live': 'polite' }, t('loading'));
  const load = async () => {
    try {
      const order = await get(`/v1/orders/${ctx.app.lastOrderId}`);
      if (!body.isConnected) return;
      clear(body);
      body.append(orderSummary(order));
      // A card waits for the hub: look again until it is decided.
      const pay = order.payments[order.payments.length - 1];
      if (order.status === 'pending_payment' && pay?.status !== 'failed') ctx.later(load, 2000);
    } catch (e) {
      if (e instanceof Unreachable) ctx.later(load, 2000);
      else ctx.showError(e, body);
    }
  };
  load();
  return h(
    'div',
    { class: 'confirmation' },
    h('h1', { id: 'screen-title', tabindex: '-1' }, t('confirmation')),
    body,
    h('button', { type: 'button', class: 'primary big', onclick: () => ctx.go('shop') }, t('newOrder')),
  );
}

export function historyScreen(ctx) {
  const list = h('div', { class: 'history', 'aria-busy': 'true' }, t('loading'));
  (async () => {
    try {
      // Newest first on screen (the API lists oldest first).
      const orders = (await getAll('/v1/orders')).reverse();
      clear(list);
      list.setAttribute('aria-busy', 'false');
      if (!orders.length) list.append(h('p', { class: 'empty' }, t('historyEmpty')));
      for (const o of orders) list.append(orderSummary(o));
    } catch (e) {
      ctx.showError(e, list);
    }
  })();
  return h(
    'div',
    { class: 'orders-screen' },
    h('h1', { id: 'screen-title', tabindex: '-1' }, t('historyTitle')),
    h('button', { type: 'button', class: 'secondary', onclick: () => ctx.go('shop') }, t('back')),
    list,
  );
}

export { orderSummary };
