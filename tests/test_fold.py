"""fold_student: the DeployGraph reproduces the student exactly (logits and spikes)."""
import numpy as np
import pytest
import torch

from export.fold import fold_student
from export.graph import run_float
from kd_snn.errors import KdsnnError
from kd_snn.models import create_model
from kd_snn.neurons import CubaLIF

T, B, C, K, HW = 4, 3, 2, 5, 8


def randomised(name, **kw):
    """Student with random BN statistics/affine params, eval mode, float64."""
    torch.manual_seed(0)
    model = create_model(name, K, C, **kw)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 2.0)
            mod.bias.data.uniform_(-0.5, 0.5)
    return model.eval().double()


def neuron_outputs(model, x):
    rec = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, p=p: rec.__setitem__(p, out))
             for p, m in model.named_modules() if isinstance(m, CubaLIF)]
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    return logits, rec


@pytest.mark.parametrize("name", ["cnn", "resnet20"])
def test_fold_reproduces_student_exactly(name):
    model = randomised(name)
    x = torch.rand(T, B, C, HW, HW, dtype=torch.float64) * 3
    graph = fold_student(model, (C, HW, HW), T)
    logits, spikes = run_float(graph, x, record=True)
    ref_logits, ref_spikes = neuron_outputs(model, x)
    np.testing.assert_allclose(logits.numpy(), ref_logits.numpy(), rtol=0, atol=1e-9)
    modules = graph.metadata["modules"]
    assert set(ref_spikes) == {modules[layer.name] for layer in graph.layers if layer.spiking}
    total = fired = 0
    for layer in graph.layers[:-1]:
        assert torch.equal(spikes[layer.name], ref_spikes[modules[layer.name]]), layer.name
        total += spikes[layer.name].numel()
        fired += int(spikes[layer.name].sum())
        assert 0 < spikes[layer.name].sum() < spikes[layer.name].numel(), layer.name
    assert 0 < fired < total


def test_resnet_graph_structure_and_names():
    graph = fold_student(randomised("resnet20"), (C, HW, HW), T)
    names = [layer.name for layer in graph.layers]
    assert names[0] == "stem" and names[-1] == "fc" and "layer3.2.lif2" in names
    assert len(names) == 1 + 2 * 9 + 1
    down = graph.layer("layer2.0.lif2")
    assert [c.source for c in down.connections] == ["layer2.0.lif1", "layer1.2.lif2"]
    short = down.connections[1]
    assert short.kind == "conv" and short.weight.shape[2:] == (2, 2) and short.stride == (2, 2)
    ident = graph.layer("layer1.1.lif2").connections[1]
    assert ident.weight.shape[2:] == (1, 1)
    np.testing.assert_array_equal(ident.weight[:, :, 0, 0], np.eye(16))
    assert not graph.output.spiking and graph.output.shape == (K,)
    assert graph.output.connections[0].kind == "dense"
    assert graph.metadata["model"] == "resnet20" and graph.metadata["num_classes"] == K
    assert graph.metadata["width"] == 1 and graph.time_steps == T


def test_fold_does_not_change_the_model():
    model = randomised("cnn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fold_student(model, (C, HW, HW), T)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_reference_student_refused_by_name():
    """The reference code's student (ReLU last block, fc-fc head), and each part alone."""
    with pytest.raises(KdsnnError, match=r"layer3\.2\.act2.*ReLU"):
        fold_student(create_model("resnet20", K, C, head="reference", last_block="relu"),
                     (C, HW, HW), T)
    with pytest.raises(KdsnnError, match=r"'head' \(TwoLayerHead\)"):
        fold_student(create_model("resnet20", K, C, head="reference"), (C, HW, HW), T)
    with pytest.raises(KdsnnError, match=r"'norm' \(InputNorm\)"):
        fold_student(create_model("resnet8", K, 3, normalize="cifar10"), (3, HW, HW), T)


def test_teacher_refused():
    with pytest.raises(KdsnnError, match="not a spiking student"):
        fold_student(create_model("cnn", K, C, spiking=False), (C, HW, HW), T)


def test_cuba_current_with_bias_refused():
    model = randomised("cnn", neuron={"alpha": 0.5})
    with pytest.raises(KdsnnError, match="alpha != 0"):
        fold_student(model, (C, HW, HW), T)


def test_cuba_current_without_bias_is_exact():
    """alpha != 0 folds when BN leaves no bias (fresh statistics, zero BN shift)."""
    torch.manual_seed(1)
    model = create_model("cnn", K, C, neuron={"alpha": 0.5}).eval().double()
    x = torch.rand(T, B, C, HW, HW, dtype=torch.float64) * 3
    graph = fold_student(model, (C, HW, HW), T)
    logits, spikes = run_float(graph, x, record=True)
    ref_logits, ref_spikes = neuron_outputs(model, x)
    np.testing.assert_allclose(logits.numpy(), ref_logits.numpy(), rtol=0, atol=1e-9)
    assert torch.equal(spikes["conv3"], ref_spikes["conv3.act"])
    assert graph.layer("conv1").alpha.shape == graph.layer("conv1").shape


def test_wrong_input_shape_is_user_error():
    with pytest.raises(KdsnnError, match="does not fit"):
        fold_student(create_model("cnn", K, C), (C + 1, HW, HW), T)
    with pytest.raises(KdsnnError, match=r"\(C, H, W\)"):
        fold_student(create_model("cnn", K, C), (T, C, HW, HW), T)


def test_spikformer_refused_by_name():
    model = create_model("spikformer", K, C, depth=1, dim=32)
    with pytest.raises(KdsnnError, match=r"'sps' \(SpikingPatchSplitting\)"):
        fold_student(model, (C, HW, HW), T)
