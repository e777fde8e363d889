// Images searched with, kept in the browser (IndexedDB) so that "#/upload/KEY" survives a
// reload and Back; the newest KEEP are kept. Where the browser keeps nothing (a private
// window may refuse), they live as long as the page.
const KEEP = 20;
const STORE = "uploads";
const memory = new Map();  // key -> {name, blob}

function database() {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open("retrieve", 1);
    open.onupgradeneeded = () => open.result.createObjectStore(STORE);
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
}

async function transact(mode, work) {
  const db = await database();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const result = work(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(result.result);
      tx.onerror = () => reject(tx.error);
    });
  } finally { db.close(); }
}

/** Keep ``file``; its key, for the address. */
export async function keep(file) {
  const key = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const entry = { name: file.name, blob: file, at: Date.now() };
  memory.set(key, entry);
  try {
    await transact("readwrite", (store) => store.put(entry, key));
    const keys = await transact("readonly", (store) => store.getAllKeys());
    for (const old of keys.sort().slice(0, Math.max(0, keys.length - KEEP))) {
      await transact("readwrite", (store) => store.delete(old));
    }
  } catch { /* kept in memory only */ }
  return key;
}

/** The kept {name, blob} of ``key``, or null. */
export async function find(key) {
  if (memory.has(key)) return memory.get(key);
  try {
    const entry = await transact("readonly", (store) => store.get(key));
    if (entry) memory.set(key, entry);
    return entry || null;
  } catch { return null; }
}
