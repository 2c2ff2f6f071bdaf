// The kiosk: screen switching, the header (language, staff, sign-out), the store's link state
// ("Offline", "Reconnecting…") and the idle sign-out of a shared screen.

import { ApiError, Unreachable, get, onReachability, setToken, signedIn } from './api.js';
import { browserLang, lang, money, setLang, t } from './i18n.js';
import { checkoutScreen, confirmationScreen, historyScreen, shopScreen } from './shop.js';
import { staffScreen, staffSignInScreen } from './staff.js';
import { announce, clear, h } from './ui.js';

const app = {
  status: null, // the last answer of GET /v1/status
  reachable: true,
  user: null,
  cart: new Map(), // product id → { product, quantity }
  screen: 'shop',
  query: '',
  category: null,
  lastOrderId: null,
};

const screens = {
  shop: shopScreen,
  checkout: checkoutScreen,
  confirmation: confirmationScreen,
  orders: historyScreen,
  'staff-signin': staffSignInScreen,
  staff: staffScreen,
};

// Timers of the current screen (polls), dropped when the screen changes.
let timers = [];

const ctx = {
  app,
  go(screen) {
    for (const id of timers) clearTimeout(id);
    timers = [];
    ctx.onCartChange = null;
    ctx.onReconnect = null;
    ctx.onStatusChange = null;
    app.screen = screen in screens ? screen : 'shop';
    render();
    document.getElementById('screen-title')?.focus();
  },
  later(fn, ms) {
    timers.push(setTimeout(fn, ms));
  },
  cartChanged() {
    renderHeader();
    ctx.onCartChange?.();
  },
  signIn(answer) {
    setToken(answer.token);
    app.user = answer.user;
    renderHeader();
  },
  showError(error, where) {
    const box = where || document.getElementById('errors');
    let detail;
    if (error instanceof Unreachable) detail = t('reconnecting');
    else if (error instanceof ApiError) detail = error.problem.detail || `HTTP ${error.status}`;
    else detail = String(error);
    box.append(h('p', { class: 'error' }, t('errorGeneric', { detail })));
  },
  onCartChange: null,
  onReconnect: null,
  onStatusChange: null,
};

function signOut() {
  setToken(null);
  app.user = null;
  app.cart.clear();
  app.query = '';
  app.category = null;
  app.lastOrderId = null;
  // Nothing of a shopper is kept in web storage; clearing it anyway leaves no trace behind.
  try {
    localStorage.clear();
    sessionStorage.clear();
  } catch {
    /* storage disabled: nothing to clear */
  }
  ctx.go('shop');
}

// ---- header and banners --------------------------------------------------------------------

function renderHeader() {
  const header = document.getElementById('top');
  clear(header);
  const count = [...app.cart.values()].reduce((n, l) => n + l.quantity, 0);
  const langButton = (code, label) =>
    h(
      'button',
      {
        type: 'button',
        class: 'chip',
        lang: code,
        'aria-pressed': String(lang() === code),
        onclick: () => {
          setLang(code);
          render();
        },
      },
      label,
    );
  header.append(
    h('a', { class: 'skip', href: '#main' }, t('skip')),
    h(
      'button',
      { type: 'button', class: 'brand', onclick: () => ctx.go(app.user?.role === 'admin' ? 'staff' : 'shop') },
      t('title'),
    ),
    h(
      'nav',
      { class: 'tools', 'aria-label': t('shop') },
      app.user?.role !== 'admin'
        ? h('button', { type: 'button', class: 'secondary', onclick: () => ctx.go('shop') }, `${t('cart')} (${count})`)
        : null,
      app.user && app.user.role !== 'admin'
        ? h('button', { type: 'button', class: 'secondary', onclick: () => ctx.go('orders') }, t('myOrders'))
        : null,
      !app.user ? h('button', { type: 'button', class: 'secondary', onclick: () => ctx.go('staff-signin') }, t('staff')) : null,
      app.user ? h('button', { type: 'button', class: 'secondary', onclick: signOut }, t('signOut')) : null,
    ),
    h('div', { class: 'langs', role: 'group', 'aria-label': t('languages') }, langButton('en', 'English'), langButton('ja', '日本語')),
  );
}

function renderBanners() {
  const offline = document.getElementById('offline');
  const reconnecting = document.getElementById('reconnecting');
  const s = app.status;
  const isOffline = app.reachable && s && s.hub === 'disconnected';
  offline.hidden = !isOffline;
  clear(offline);
  if (isOffline) {
    offline.append(
      h('strong', {}, t('offline')),
      h('span', {}, ` ${t('offlineDetail')} `),
      h('span', { id: 'card-limits' }, t('cardOfflineLimits', { limit: fmt(s.offline_card_limit), total: fmt(s.offline_card_total) })),
    );
  }
  reconnecting.hidden = app.reachable;
  clear(reconnecting);
  if (!app.reachable) {
    reconnecting.append(h('p', { class: 'big-text' }, t('reconnecting')), h('p', {}, t('reconnectingDetail')));
  }
  // Inert: nothing behind the overlay can be focused or touched while the node is away.
  document.getElementById('app').inert = !app.reachable;
}

function fmt(amount) {
  return money(amount, app.status.currency);
}

function render() {
  renderHeader();
  renderBanners();
  const main = document.getElementById('main');
  clear(main);
  main.append(h('div', { id: 'errors', class: 'errors', role: 'alert' }), screens[app.screen](ctx));
}

// ---- link state ----------------------------------------------------------------------------

// Whether the node answers is learnt from every request; the hub link from GET /v1/status.
// While the node is gone the status is polled every second, so the screen comes back (without
// a reload) about a second after the node does.
async function pollStatus() {
  let next = 2000;
  try {
    const before = app.status?.hub;
    app.status = await get('/v1/status', { timeoutMs: 3000 });
    if (app.status.hub !== before) {
      renderBanners();
      ctx.onStatusChange?.();
    }
  } catch {
    next = 1000;
  }
  setTimeout(pollStatus, next);
}

onReachability((reachable) => {
  if (reachable === app.reachable) return;
  app.reachable = reachable;
  renderBanners();
  if (reachable) {
    // Whatever the screen showed may have changed while the node was away.
    if (app.screen === 'shop') render();
    else ctx.onReconnect?.();
  }
});

// ---- idle sign-out -------------------------------------------------------------------------

let lastTouch = Date.now();
for (const event of ['pointerdown', 'keydown', 'input', 'wheel', 'touchstart']) {
  window.addEventListener(event, () => {
    lastTouch = Date.now();
  }, { capture: true, passive: true });
}

setInterval(() => {
  const idleMs = (app.status?.kiosk_idle_secs ?? 120) * 1000;
  const somethingToForget = signedIn() || app.cart.size > 0 || app.screen !== 'shop' || app.query || lang() !== browserLang();
  if (somethingToForget && Date.now() - lastTouch >= idleMs) {
    lastTouch = Date.now();
    setLang(browserLang());
    signOut();
    announce(t('idleSignedOut'));
  }
}, 500);

// ---- start ---------------------------------------------------------------------------------

setLang(browserLang());
render();
pollStatus();
