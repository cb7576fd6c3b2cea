// Does this view hear the kernel? (prepended to every PitBox anywidget module)
//
// anywidget gives a model 2 s from its creation to load and bind its module; when a busy
// page takes longer, the model's Runtime.ready rejects and every message the kernel sends to
// that model afterwards is dropped, for good: custom messages and trait updates alike. The
// view still renders and its messages still reach the kernel, so the page looks alive and
// shows nothing new. Each view therefore says "hello" when it renders, and again every
// HEARING_MS until any message from the kernel arrives; every unanswered period it also says
// "deaf", and the kernel (pitbox.hearing) puts a new model in its place.
const HEARING_MS = 3000;

function watchHearing(model, el, viewId) {
  let timer = null;
  const heard = () => {
    el.dataset.pitboxHearing = "yes";
    model.off("msg:custom", heard);
    if (timer !== null) { clearTimeout(timer); timer = null; }
  };
  const tick = () => {
    model.send({ type: "deaf", view: viewId });
    model.send({ type: "hello", view: viewId });
    timer = setTimeout(tick, HEARING_MS);
  };
  el.dataset.pitboxHearing = "no";
  model.on("msg:custom", heard);
  model.send({ type: "hello", view: viewId });
  timer = setTimeout(tick, HEARING_MS);
  return () => { if (timer !== null) clearTimeout(timer); timer = null; model.off("msg:custom", heard); };
}

