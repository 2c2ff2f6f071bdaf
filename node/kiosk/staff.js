// The staff view: an admin signs in on the kiosk to receive stock, move today's orders along
// (shipped, delivered), refund, and see how the store's sync with the hub is doing.

import { Unreachable, get, getAll, newKey, post } from './api.js';
import { dateTime, money, t } from './i18n.js';
import { orderSummary, shortId, stockText } from './shop.js';
import { announce, clear, field, h, uid } from './ui.js';

export function staffSignInScreen(ctx) {
  const errors = h('div', { class: 'errors', role: 'alert' });
  const [emailField, email] = field(t('email'), { type: 'email', name: 'email', autocomplete: 'off', required: true });
  const [passwordField, password] = field(t('password'), {
    type: 'password',
    name: 'password',
    autocomplete: 'off',
    required: true,
  });
  const form = h(
    'form',
    {
      class: 'panel',
      onsubmit: async (e) => {
        e.preventDefault();
        clear(errors);
        try {
          const answer = await post('/v1/auth/login', { email: email.value, password: password.value });
          if (answer.user.role !== 'admin') {
            errors.append(h('p', {}, t('notStaff')));
            return;
          }
          ctx.signIn(answer);
          ctx.go('staff');
        } catch (err) {
          ctx.showError(err, errors);
        }
      },
    },
    emailField,
    passwordField,
    h('button', { type: 'submit', class: 'primary big' }, t('signIn')),
  );
  return h(
    'div',
    { class: 'staff-signin' },
    h('h1', { id: 'screen-title', tabindex: '-1' }, t('staffSignIn')),
    h('button', { type: 'button', class: 'secondary', onclick: () => ctx.go('shop') }, t('back')),
    form,
    errors,
  );
}

export function staffScreen(ctx) {
  const errors = h('div', { class: 'errors', role: 'alert' });
  const sync = h('section', { class: 'panel sync', 'aria-labelledby': 'sync-title' });
  const stock = h('section', { class: 'panel receive', 'aria-labelledby': 'stock-title' });
  const orders = h('section', { class: 'panel today', 'aria-labelledby': 'orders-title' });
  const refresh = () => {
    loadSync(ctx, sync, errors);
    loadStock(ctx, stock, errors);
    loadOrders(ctx, orders, errors);
  };
  ctx.onReconnect = refresh;
  refresh();
  return h(
    'div',
    { class: 'staff' },
    h('h1', { id: 'screen-title', tabindex: '-1' }, t('staffView')),
    h('button', { type: 'button', class: 'secondary', onclick: refresh }, t('refresh')),
    errors,
    sync,
    stock,
    orders,
  );
}

async function loadSync(ctx, root, errors) {
  try {
    const s = await get('/v1/sync/status');
    clear(root);
    root.append(
      h('h2', { id: 'sync-title' }, t('syncStatus')),
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, t('syncMode')),
        h('dd', { 'data-mode': s.mode }, t(`link_${s.mode}`)),
        h('dt', {}, t('lastSync')),
        h('dd', {}, s.last_sync_at ? dateTime(s.last_sync_at) : t('never')),
        h('dt', {}, t('pendingChanges')),
        h('dd', {}, String(s.pending_changes)),
      ),
    );
  } catch (e) {
    if (!(e instanceof Unreachable)) ctx.showError(e, errors);
  }
}

async function loadStock(ctx, root, errors) {
  let products;
  try {
    products = await getAll('/v1/products');
  } catch (e) {
    if (!(e instanceof Unreachable)) ctx.showError(e, errors);
    return;
  }
  clear(root);
  root.append(h('h2', { id: 'stock-title' }, t('receiveStock')));
  const list = h('ul', { class: 'stock-list' });
  for (const p of products) {
    const nameId = uid('s');
    const level = h('span', { class: 'stock' }, stockText(p.stock));
    const [qtyField, qty] = field(t('quantity'), {
      type: 'number',
      inputmode: 'numeric',
      min: '1',
      max: '1000000000',
      step: '1',
      value: '1',
      'aria-describedby': nameId,
    });
    const key = { value: newKey() };
    const form = h(
      'form',
      {
        class: 'receive-form',
        'data-product-id': p.id,
        onsubmit: async (e) => {
          e.preventDefault();
          clear(errors);
          const n = Math.floor(Number(qty.value));
          try {
            const after = await post(`/v1/products/${p.id}/stock`, { delta: n }, { key: key.value });
            key.value = newKey();
            level.textContent = stockText(after);
            announce(t('received', { n, name: p.name, here: after.available_here }));
          } catch (err) {
            ctx.showError(err, errors);
          }
        },
      },
      qtyField,
      h('button', { type: 'submit', class: 'primary', 'aria-describedby': nameId }, t('receiveStock')),
    );
    list.append(h('li', { class: 'stock-row' }, h('span', { id: nameId, class: 'line-name' }, p.name), level, form));
  }
  root.append(list);
}

function isToday(iso) {
  const d = new Date(iso);
  const now = new Date();
  return d.getFullYear() === now.getFullYear() && d.getMonth() === now.getMonth() && d.getDate() === now.getDate();
}

async function loadOrders(ctx, root, errors) {
  let orders;
  try {
    // Oldest first: today's are at the end.
    orders = await getAll('/v1/orders');
  } catch (e) {
    if (!(e instanceof Unreachable)) ctx.showError(e, errors);
    return;
  }
  clear(root);
  root.append(h('h2', { id: 'orders-title' }, t('todaysOrders')));
  const today = orders.filter((o) => isToday(o.created_at)).reverse();
  if (!today.length) root.append(h('p', { class: 'empty' }, t('noOrdersToday')));
  const act = (label, run) =>
    h(
      'button',
      {
        type: 'button',
        class: 'primary',
        onclick: async () => {
          clear(errors);
          try {
            await run();
            loadOrders(ctx, root, errors);
          } catch (err) {
            ctx.showError(err, errors);
          }
        },
      },
      label,
    );
  for (const o of today) {
    const card = orderSummary(o, { heading: 'h3' });
    const actions = h('div', { class: 'actions' });
    if (o.status === 'paid') {
      actions.append(act(t('markShipped'), () => post(`/v1/orders/${o.id}/status`, { status: 'shipped' })));
    }
    if (o.status === 'shipped') {
      actions.append(act(t('markDelivered'), () => post(`/v1/orders/${o.id}/status`, { status: 'delivered' })));
    }
    for (const pay of o.payments) {
      const left = pay.amount.amount - pay.refunded.amount;
      if ((pay.status === 'captured' || pay.status === 'partially_refunded') && left > 0) {
        const key = newKey();
        actions.append(
          act(`${t('refund')} ${money(left, pay.amount.currency)}`, async () => {
            await post(`/v1/payments/${pay.id}/refunds`, { amount: left, reason: 'refund at the kiosk' }, { key });
            announce(t('refunded', { amount: money(left, pay.amount.currency) }));
          }),
        );
      }
    }
    card.append(h('p', { class: 'hint' }, `${t('customer')}: ${shortId(o.user_id)}`), actions);
    root.append(card);
  }
}
