// How the page fits the screen it is on: anchored sections clear the sticky header, and
// tables marked "cards" read as labelled cards on a phone (see static/style.css).

// The header wraps onto two or three lines on a phone: its real height, as a CSS variable,
// is what scroll-padding-top keeps clear when a section or a run's details scroll into view.
const header = document.querySelector("body > header");
function noteHeaderHeight() {
  const height = header ? Math.ceil(header.getBoundingClientRect().height) : 0;
  document.documentElement.style.setProperty("--header-h", `${height}px`);
}
noteHeaderHeight();
if (header) new ResizeObserver(noteHeaderHeight).observe(header);

// A card shows each value with its column's name: the names are copied from the table's
// head into each cell's data-label whenever the rows change (the CSS shows them on a phone).
function labelCells(table) {
  // A column named for screen readers only (the Stop button's) shows no label on a card.
  const names = [...table.querySelectorAll("thead th")].map((th) => (th.querySelector(".sr-only") ? "" : th.textContent.trim()));
  for (const row of table.tBodies[0]?.rows || []) {
    [...row.cells].forEach((td, i) => {
      const name = names[i] || "";
      if (td.dataset.label !== name) td.dataset.label = name;
    });
  }
}
for (const table of document.querySelectorAll("table.cards")) {
  labelCells(table);
  new MutationObserver(() => labelCells(table)).observe(table.tBodies[0], { childList: true, subtree: true });
}

// A section opened from the nav is shown in place of a longer or shorter one: the scroll
// position left over from that one can put its heading under the header (or above the
// screen). When a section appears, its top is brought below the header.
const headerBottom = () => (header ? header.getBoundingClientRect().bottom : 0);
const appeared = new MutationObserver((changes) => {
  for (const change of changes) {
    const section = change.target;
    if (section.hidden) continue;
    const top = section.getBoundingClientRect().top;
    if (top < headerBottom() || top > window.innerHeight) section.scrollIntoView({ block: "start" });
  }
});
for (const section of document.querySelectorAll("main > section.tab")) {
  appeared.observe(section, { attributes: true, attributeFilter: ["hidden"] });
}
