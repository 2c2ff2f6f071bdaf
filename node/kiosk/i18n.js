// Every visible string of the kiosk, in English and Japanese. Keys are stable; `{name}` marks a
// value filled in by t(). The English labels named in issue 12 are contracts (the browser tests
// find controls by them): change them there too.

const en = {
  title: 'edgecart store',
  skip: 'Skip to content',
  languages: 'Language',
  staff: 'Staff',
  myOrders: 'My orders',
  signOut: 'Sign out',
  shop: 'Shop',
  search: 'Search',
  searchPlaceholder: 'Name or description',
  categories: 'Categories',
  allCategories: 'All',
  products: 'Products',
  noProducts: 'No products match.',
  loading: 'Loading…',
  here: '{n} here',
  outHereInChain: 'out of stock here — {m} in the chain',
  outEverywhere: 'out of stock',
  addToCart: 'Add to cart',
  added: '{name} added to the cart',
  cart: 'Cart',
  cartEmpty: 'Your cart is empty.',
  quantity: 'Quantity',
  remove: 'Remove',
  removeItem: 'Remove {name}',
  total: 'Total',
  items: '{n} items',
  item: '{n} item',
  checkout: 'Checkout',
  back: 'Back to shop',
  account: 'Your account',
  accountHint: 'Register, or sign in if you have an account (Name is only needed to register).',
  email: 'Email',
  name: 'Name',
  password: 'Password',
  register: 'Register',
  signIn: 'Sign in',
  signedInAs: 'Signed in as {name}',
  payment: 'Payment',
  payBy: 'Pay by',
  cash: 'Cash',
  card: 'Card',
  cardToken: 'Card token',
  cardOfflineLimits: 'Card payments: up to {limit} each, {total} in total.',
  placeOrder: 'Place order',
  placing: 'Placing your order…',
  needAccount: 'Sign in or register first.',
  tooMany: 'Only {n} of {name} can be sold at this store ({m} in the chain). No order was placed; change the quantity in your cart.',
  confirmation: 'Thank you!',
  orderNumber: 'Order {id}',
  orderStatus: 'Status',
  newOrder: 'Continue shopping',
  cardPending: 'Waiting for the hub to confirm the card.',
  cardOffline: 'Card accepted offline: it is charged when the store is back online.',
  cardFailed: 'The card payment failed: {reason}. Please ask staff.',
  historyTitle: 'My orders',
  historyEmpty: 'No orders yet.',
  placedAt: 'Placed {at}',
  offline: 'Offline',
  offlineDetail: 'This store keeps selling while its link to the chain is down.',
  reconnecting: 'Reconnecting…',
  reconnectingDetail: 'The store is restarting. This screen comes back by itself.',
  idleSignedOut: 'Signed out after inactivity.',
  staffSignIn: 'Staff sign-in',
  notStaff: 'This account is not a staff account.',
  staffView: 'Staff',
  syncStatus: 'Sync status',
  syncMode: 'Link to the hub',
  lastSync: 'Last sync',
  pendingChanges: 'Changes not yet sent',
  never: 'never',
  refresh: 'Refresh',
  receiveStock: 'Receive stock',
  received: '{n} × {name} received: {here} here now',
  todaysOrders: "Today's orders",
  noOrdersToday: 'No orders today.',
  markShipped: 'Mark shipped',
  markDelivered: 'Mark delivered',
  refund: 'Refund',
  refunded: 'Refunded {amount}',
  customer: 'Customer',
  errorGeneric: 'Something went wrong: {detail}',
  status_pending_payment: 'Pending payment',
  status_paid: 'Paid',
  status_shipped: 'Shipped',
  status_delivered: 'Delivered',
  status_cancelled: 'Cancelled',
  link_connected: 'Connected',
  link_disconnected: 'Offline',
  link_standalone: 'Standalone (no hub)',
};

const ja = {
  title: 'edgecart ストア',
  skip: '本文へ移動',
  languages: '言語',
  staff: 'スタッフ',
  myOrders: '注文履歴',
  signOut: 'サインアウト',
  shop: 'ショップ',
  search: '検索',
  searchPlaceholder: '商品名または説明',
  categories: 'カテゴリー',
  allCategories: 'すべて',
  products: '商品',
  noProducts: '該当する商品はありません。',
  loading: '読み込み中…',
  here: 'この店に {n} 点',
  outHereInChain: 'この店では在庫切れ — チェーン全体で {m} 点',
  outEverywhere: '在庫切れ',
  addToCart: 'カートに入れる',
  added: '{name} をカートに入れました',
  cart: 'カート',
  cartEmpty: 'カートは空です。',
  quantity: '数量',
  remove: '削除',
  removeItem: '{name} を削除',
  total: '合計',
  items: '{n} 点',
  item: '{n} 点',
  checkout: 'レジに進む',
  back: 'ショップに戻る',
  account: 'アカウント',
  accountHint: '新規登録、またはアカウントをお持ちの方はサインインしてください（お名前は登録時のみ必要です）。',
  email: 'メールアドレス',
  name: 'お名前',
  password: 'パスワード',
  register: '新規登録',
  signIn: 'サインイン',
  signedInAs: '{name} さんでサインイン中',
  payment: 'お支払い',
  payBy: 'お支払い方法',
  cash: '現金',
  card: 'カード',
  cardToken: 'カードトークン',
  cardOfflineLimits: 'カード払い：1 回 {limit} まで、合計 {total} まで。',
  placeOrder: '注文する',
  placing: '注文を処理しています…',
  needAccount: '先にサインインまたは新規登録をしてください。',
  tooMany: '{name} はこの店では {n} 点までしか販売できません（チェーン全体で {m} 点）。注文はされていません。カートの数量を変更してください。',
  confirmation: 'ありがとうございました！',
  orderNumber: '注文 {id}',
  orderStatus: '状態',
  newOrder: '買い物を続ける',
  cardPending: 'ハブがカード決済を確認するのを待っています。',
  cardOffline: 'カードはオフラインで受け付けました。店舗がオンラインに戻ると請求されます。',
  cardFailed: 'カード決済に失敗しました：{reason}。スタッフにお声がけください。',
  historyTitle: '注文履歴',
  historyEmpty: 'まだ注文はありません。',
  placedAt: '注文日時 {at}',
  offline: 'オフライン',
  offlineDetail: 'チェーンとの接続が切れていますが、この店は販売を続けています。',
  reconnecting: '再接続中…',
  reconnectingDetail: 'ストアを再起動しています。この画面は自動的に戻ります。',
  idleSignedOut: '操作がなかったためサインアウトしました。',
  staffSignIn: 'スタッフのサインイン',
  notStaff: 'このアカウントはスタッフのアカウントではありません。',
  staffView: 'スタッフ',
  syncStatus: '同期の状態',
  syncMode: 'ハブとの接続',
  lastSync: '最終同期',
  pendingChanges: '未送信の変更',
  never: 'なし',
  refresh: '更新',
  receiveStock: '入荷を登録',
  received: '{name} を {n} 点入荷しました：この店に {here} 点',
  todaysOrders: '本日の注文',
  noOrdersToday: '本日の注文はありません。',
  markShipped: '発送済みにする',
  markDelivered: '配達済みにする',
  refund: '返金',
  refunded: '{amount} を返金しました',
  customer: 'お客様',
  errorGeneric: 'エラーが発生しました：{detail}',
  status_pending_payment: '支払い待ち',
  status_paid: '支払い済み',
  status_shipped: '発送済み',
  status_delivered: '配達済み',
  status_cancelled: 'キャンセル済み',
  link_connected: '接続中',
  link_disconnected: 'オフライン',
  link_standalone: 'スタンドアロン（ハブなし）',
};

export const LANGS = { en, ja };

let current = 'en';

/** The language the browser asks for, if we have it; English otherwise. */
export function browserLang() {
  const wanted = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
  for (const tag of wanted) {
    const base = String(tag).toLowerCase().split('-')[0];
    if (base in LANGS) return base;
  }
  return 'en';
}

export function setLang(lang) {
  current = lang in LANGS ? lang : 'en';
  document.documentElement.lang = current;
  document.title = t('title');
}

export function lang() {
  return current;
}

export function t(key, params = {}) {
  const text = LANGS[current][key] ?? en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, k) => (k in params ? String(params[k]) : `{${k}}`));
}

const locales = { en: 'en-US', ja: 'ja-JP' };

/** The number of minor units in one major unit of `currency` (JPY: 0 digits, USD: 2). */
function minorDigits(currency) {
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits;
  } catch {
    return 2;
  }
}

/** Formats integer minor units for the current language. */
export function money(amount, currency) {
  const digits = minorDigits(currency);
  const value = amount / 10 ** digits;
  try {
    return new Intl.NumberFormat(locales[current], { style: 'currency', currency }).format(value);
  } catch {
    return `${value.toFixed(digits)} ${currency}`;
  }
}

export function dateTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return new Intl.DateTimeFormat(locales[current], { dateStyle: 'medium', timeStyle: 'short' }).format(d);
}
