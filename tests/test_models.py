"""Model zoo: shapes, features, classifier weights, gradients, registry errors."""
import pytest
import torch
from torch import nn

from kd_snn.errors import KdsnnError
from kd_snn.models import create_model, list_models, register_model
from kd_snn.neurons import CubaLIF

T, B, C, K = 2, 2, 3, 5
CONV_MODELS = ["cnn", "resnet8", "resnet19", "resnet20"]


def test_registry_lists_families():
    assert set(CONV_MODELS) <= set(list_models())


def test_unknown_model_names_choices():
    with pytest.raises(KdsnnError, match=r"unknown model 'nope' \(choose from .*resnet20"):
        create_model("nope", K, C)


def test_bad_options_are_user_errors():
    with pytest.raises(KdsnnError, match="unknown head"):
        create_model("cnn", K, C, head="conv")
    with pytest.raises(KdsnnError, match="unknown last_block"):
        create_model("cnn", K, C, last_block="sigmoid")
    with pytest.raises(KdsnnError, match="unknown normalize"):
        create_model("cnn", K, C, normalize="imagenet")
    with pytest.raises(KdsnnError, match="3-channel images"):
        create_model("cnn", K, 1, normalize="cifar10")
    with pytest.raises(KdsnnError, match="only spiking blocks"):
        create_model("spikformer", K, C, last_block="relu", depth=1, dim=32)
    with pytest.raises(KdsnnError, match="unknown neuron option"):
        create_model("cnn", K, C, neuron={"tau": 2.0})


def test_register_model_rejects_duplicates():
    with pytest.raises(ValueError):
        register_model(lambda **kw: None, name="cnn")


@pytest.mark.parametrize("name", CONV_MODELS)
@pytest.mark.parametrize("size", [8, 16])
def test_student_and_teacher_shapes(name, size):
    student = create_model(name, K, C, width=0.5)
    teacher = create_model(name, K, C, spiking=False, width=0.5)
    logits, spikes = student.forward_features(torch.rand(T, B, C, size, size) * 2)
    t_logits, fmap = teacher.forward_features(torch.rand(B, C, size, size))
    assert logits.shape == t_logits.shape == (B, K)
    assert spikes.shape[:2] == (T, B) and spikes.dim() == 5
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert fmap.shape[1:] == spikes.shape[2:]  # same last-stage map for SAMD
    assert student.classifier_weight.shape == teacher.classifier_weight.shape \
        == (K, spikes.shape[2])
    assert student.deployable and not teacher.deployable
    assert student.config["name"] == name and student.config["width"] == 0.5


def test_cnn_last_stage_sizes():
    model = create_model("cnn", K, 1)
    assert model.forward_features(torch.rand(T, 1, 1, 8, 8))[1].shape[-2:] == (2, 2)
    assert model.forward_features(torch.rand(T, 1, 1, 28, 28))[1].shape[-2:] == (7, 7)


def test_resnet_width_8_channels():
    model = create_model("resnet19", K, C, width=8)
    assert model.classifier_weight.shape == (K, 512)
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [3, 3, 2]
    assert [len(getattr(create_model("resnet20", K, C), f"layer{i}")) for i in (1, 2, 3)] \
        == [3, 3, 3]


def test_tdbn_weight_init_is_threshold():
    model = create_model("cnn", K, C, neuron={"threshold": 0.75})
    assert torch.all(model.conv1.bn.weight == 0.75)
    assert model.conv1.act.threshold.item() == 0.75


def test_neuron_kwargs_reach_every_neuron():
    model = create_model("resnet20", K, C, neuron={"beta": 0.25, "surrogate": "sigmoid"})
    neurons = [m for m in model.modules() if isinstance(m, CubaLIF)]
    assert len(neurons) == 1 + 2 * 9
    assert all(n.beta.item() == 0.25 and n.surrogate == "sigmoid" for n in neurons)


@pytest.mark.parametrize("name", CONV_MODELS)
def test_gradients_reach_every_student_parameter(name):
    torch.manual_seed(0)
    model = create_model(name, K, C, width=0.5)
    model(torch.rand(T, 4, C, 8, 8) * 3).logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters()
               if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("head", ["reference", "mlp"])
def test_two_layer_heads_and_relu_last_block(head):
    student = create_model("resnet20", K, C, head=head, last_block="relu")
    assert not student.deployable
    assert isinstance(student.layer3[-1].act2, nn.ReLU)
    assert isinstance(student.layer3[0].act2, CubaLIF)
    logits, feats = student.forward_features(torch.rand(T, B, C, 8, 8))
    assert logits.shape == (B, K) and feats.shape == (T, B, 64, 2, 2)
    assert student.classifier_weight.shape == (K, 64)
    assert student.head.fc1.out_features == 256
    assert (student.head.relu is None) == (head == "reference")
    teacher = create_model("resnet20", K, C, spiking=False, head=head)
    assert teacher(torch.rand(B, C, 8, 8)).shape == (B, K)


def test_head_and_last_block_are_independent():
    assert isinstance(create_model("resnet8", K, C, head="reference").layer3[-1].act2, CubaLIF)
    cnn = create_model("cnn", K, C, last_block="relu")
    assert isinstance(cnn.conv3.act, nn.ReLU) and isinstance(cnn.conv2.act, CubaLIF)
    assert not cnn.deployable and create_model("cnn", K, C).deployable


def test_wrong_input_rank_is_explained():
    with pytest.raises(ValueError, match=r"\(T, B, C, H, W\)"):
        create_model("cnn", K, C)(torch.rand(B, C, 8, 8))


SMALL_SPIKFORMER = {"depth": 1, "dim": 32}


def test_every_registered_model_is_covered():
    assert set(list_models()) == set(CONV_MODELS) | {"spikformer"}


def test_spikformer_shapes_and_flags():
    model = create_model("spikformer", K, C, **SMALL_SPIKFORMER)
    logits, feats = model.forward_features(torch.rand(T, B, C, 8, 8) * 2)
    assert logits.shape == (B, K) and feats.shape == (T, B, 32, 2, 2)
    assert model.classifier_weight.shape == (K, 32)
    assert not model.deployable
    default = create_model("spikformer", K, C)
    assert len(default.blocks) == 4 and default.classifier_weight.shape == (K, 384)
    assert default.blocks[0].attn.heads == 12


def test_spikformer_has_no_teacher_twin():
    with pytest.raises(KdsnnError, match="no ANN twin"):
        create_model("spikformer", K, C, spiking=False)


def test_spikformer_trains_on_a_fixed_batch():
    torch.manual_seed(0)
    model = create_model("spikformer", K, C, **SMALL_SPIKFORMER)
    x, y = torch.rand(T, 8, C, 8, 8) * 2, torch.randint(0, K, (8,))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    losses = []
    for _ in range(6):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        if not losses:
            assert all(p.grad is not None and p.grad.abs().sum() > 0
                       for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
