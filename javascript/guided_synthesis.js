// Colour swatches in the Guided Synthesis palette table: a cell holding "#rrggbb" gets a square of
// that colour in front, so a user sees which stroke colour each phrase is bound to.
(function () {
    const HEX = /^#[0-9a-fA-F]{6}$/;

    // Touches the DOM only when a swatch is missing, stale or orphaned: every write is itself a UI
    // update, so an unconditional write would call this again forever (it hung the page once).
    function decorate(root) {
        root.querySelectorAll('[id*="guided_synthesis_palette"] td').forEach(function (cell) {
            const label = Array.from(cell.querySelectorAll('span')).find(function (span) {
                return !span.classList.contains('guided-swatch');
            });
            const text = label ? (label.textContent || '').trim().toLowerCase() : '';
            let swatch = cell.querySelector('.guided-swatch');
            if (!HEX.test(text)) {
                if (swatch) swatch.remove();
                return;
            }
            if (!swatch) {
                swatch = document.createElement('span');
                swatch.className = 'guided-swatch';
                cell.insertBefore(swatch, cell.firstChild);
            }
            if (swatch.dataset.colour !== text) {
                swatch.dataset.colour = text;
                swatch.style.background = text;
            }
        });
    }

    onAfterUiUpdate(function () {
        decorate(gradioApp());
    });
})();
