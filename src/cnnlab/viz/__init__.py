"""See what a CNN sees: filters, activation maps, Grad-CAM and attributions, templates,
embeddings and retrieval, training curves, as pictures (``cnnlab viz KIND``) and as numbers.

One small module per kind of picture; each has a compute function (numbers, numpy/torch,
no matplotlib) and a ``plot_*`` / ``*_figure`` function writing a PNG. Stable API for other
parts of cnnlab (``cnnlab serve`` shows these results rather than computing them again):

``cnnlab.viz.common``
    ``load_checkpoint_model(checkpoint, device="cpu") -> (model, meta)``: torch model in eval
    mode from a checkpoint / run directory (:func:`cnnlab.inference.load_model`).
    ``load_images(paths, spec) -> uint8 (N, C, H, W)``: image files converted to the model's
    channels and size (:func:`cnnlab.inference.load_image`).
    ``normalize(images_uint8, spec) -> float (N, C, H, W)``: ``(x/255 - mean)/std`` with the
    checkpoint's ``meta["input"]``, as training and ``cnnlab predict`` do.
    ``load_inputs(checkpoint, paths, device="cpu") -> (model, meta, raw_uint8, x)``.

``cnnlab.viz.activations``
    ``stages(model) -> list[(name, module)]``: the stages to show for any zoo model
    (sequential ``features``: every conv/pool/activation; GoogLeNet/ResNet: each top-level
    stage such as ``inception4a`` or ``layer2``; MLP/linear: hidden FC outputs).
    ``capture_activations(model, x, layers=None) -> dict[name, Tensor]``: outputs in forward
    order, (N, C, H, W) or (N, F), detached clones (in-place ReLUs are safe); eval mode during
    the pass, the model's mode restored and hooks removed afterwards
    (``ActivationRecorder`` is the context manager underneath).
    ``capture_with_probs(model, x, layers=None) -> (activations, probs (N, classes))``.

``cnnlab.viz.gradcam``
    ``grad_cam(model, x, target=None, layer=None, plus_plus=False) -> (cam, classes, layer)``:
    cam float32 numpy (N, H, W) at the input size, in [0, 1]; classes int (N,) (predicted
    when ``target`` is None); the layer is ``model.feature_layers["last_conv"]`` or the last
    spatial layer found by a forward pass; the MLP/linear raise UserError (no spatial layer).
    ``GradCAM(model, layer=None)``: the same as a context manager holding the hook.
    ``find_cam_layer(model, x=None) -> str``.
    ``class_targets(target, classes)``: ``--class`` as given (an index, a class name, or a
    comma list with one per image) -> None, an index or a list of indices.
    ``gradcam(model_or_run, images, target=None, layer=None, method="gradcam") -> CAM``:
    the public ``cnnlab.gradcam``; from a run directory and image files or uint8 arrays to
    NumPy maps ``(maps (N, H, W), classes (N,), layer)``.

``cnnlab.viz.pictures``
    One call per ``cnnlab viz KIND``. Counts left at their default (``n=None``: 2000 for
    embed, 6 for gradcam, ...) shrink to what the data holds and say so on stderr; an
    explicit count the data cannot fill raises UserError.

Errors a user can act on raise :class:`cnnlab.errors.UserError` with one line.
"""
