function (search) {
    if (!window.__crisisHistory) {
        window.__crisisHistory = true;
        window.addEventListener("popstate", function () { window.location.reload(); });
    }
    if (typeof search === "string" && search !== window.location.search) {
        window.history.pushState(null, "", window.location.pathname + search);
    }
    return window.dash_clientside.no_update;
}
