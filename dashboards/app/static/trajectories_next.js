function (next) {
    window.__crisisNext = next;
    if (!window.__crisisWaiting) {
        window.__crisisWaiting = true;
        var frames = 0;
        var apply = function () {
            var gd = document.querySelector("#trajectories .js-plotly-plot");
            if (!(gd && gd.data && gd._fullLayout) && frames++ < 1200) {
                window.requestAnimationFrame(apply);
                return;
            }
            window.__crisisWaiting = false;
            var latest = window.__crisisNext;
            if (gd && latest && latest.y && gd.data.length === latest.y.length) {
                var data = gd.data.map(function (trace, i) {
                    return Object.assign({}, trace, {y: latest.y[i]});
                });
                window.Plotly.react(gd, data, gd.layout);
            }
        };
        apply();
    }
    return window.dash_clientside.no_update;
}
