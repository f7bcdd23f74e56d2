// Colour swatches in the Guided Synthesis palette table: a cell holding "#rrggbb" gets a square of
// that colour in front, so a user sees which stroke colour each phrase is bound to.
(function () {
    const HEX = /^#[0-9a-fA-F]{6}$/;

    function decorate(root) {
        root.querySelectorAll('[id$="guided_synthesis_palette"] td span, [id*="guided_synthesis_palette"] td span')
            .forEach(function (span) {
                const text = (span.textContent || '').trim();
                const cell = span.closest('td');
                if (!cell) return;
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
                swatch.style.background = text;
            });
    }

    onUiUpdate(function () {
        decorate(gradioApp());
    });
})();
