function (figure) {
    return new Promise(function (resolve) {
        window.requestAnimationFrame(function () { setTimeout(function () { resolve(figure); }, 0); });
    });
}
