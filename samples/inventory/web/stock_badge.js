// Renders the low-stock badge on the admin dashboard from GET /api/stock/low.

const LOW_STOCK_THRESHOLD = 5;

export function badgeText(skus) {
  if (skus.length === 0) {
    return "stock ok";
  }
  return `${skus.length} low: ${skus.slice(0, 3).join(", ")}${skus.length > 3 ? "…" : ""}`;
}

export async function refreshBadge(element, fetchJson) {
  const payload = await fetchJson(`/api/stock/low?threshold=${LOW_STOCK_THRESHOLD}`);
  element.textContent = badgeText(payload.skus);
  element.classList.toggle("warning", payload.skus.length > 0);
}
