"""ImageNet weights for the image encoder, never downloaded here: a locally made torchvision state
dict placed where torchvision looks for it, the 1-channel stem as the RGB sum, and the offline error."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch.hub folder, and any download attempt turned into the offline failure."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    calls = []

    def offline(url, *args, **kwargs):
        calls.append(url)
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    return tmp_path / "torch", calls


def _place_resnet18(path):
    import torchvision

    torch.manual_seed(3)
    net = torchvision.models.resnet18(weights=None)  # random weights standing in for ImageNet's
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return net.state_dict()


def test_imagenet_file_is_where_torchvision_looks(torch_home):
    import torchvision

    from amfmedit.models.image import imagenet_weights_file

    home, _ = torch_home
    path = imagenet_weights_file("resnet18")
    assert path.parent == home / "hub" / "checkpoints"
    assert path.name == torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    assert imagenet_weights_file("resnet50").name == \
        torchvision.models.ResNet50_Weights.IMAGENET1K_V2.url.rsplit("/", 1)[-1]


def test_imagenet_weights_load_into_a_one_channel_stem_as_the_rgb_sum(torch_home):
    from amfmedit.models.image import ImageEncoder, imagenet_weights_file

    _, calls = torch_home
    ref = _place_resnet18(imagenet_weights_file("resnet18"))
    enc = ImageEncoder(arch="resnet18", in_channels=1, weights="imagenet")
    assert calls == []  # read from the cache, nothing fetched
    assert enc.conv1.weight.shape == (64, 1, 7, 7)
    torch.testing.assert_close(enc.conv1.weight, ref["conv1.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(enc.layer4[1].conv2.weight, ref["layer4.1.conv2.weight"])
    torch.testing.assert_close(enc.bn1.running_mean, ref["bn1.running_mean"])
    assert "weights" not in enc.config and enc.weights_source.startswith("imagenet (ResNet18_Weights.IMAGENET1K_V1")
    # a grey image through the summed stem answers as the RGB stem does to the grey image repeated thrice
    rgb = ImageEncoder(arch="resnet18", in_channels=3, weights="imagenet").eval()
    torch.testing.assert_close(rgb.conv1.weight, ref["conv1.weight"])
    grey = torch.rand(2, 1, 64, 64)
    torch.testing.assert_close(enc.eval()(grey), rgb(grey.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-5)


def test_local_state_dict_path_and_none(tmp_path, torch_home):
    from amfmedit.errors import UserError
    from amfmedit.models.image import ImageEncoder, parse_image_weights

    ref = _place_resnet18(tmp_path / "mine.pth")
    enc = ImageEncoder(arch="resnet18", in_channels=1, weights=parse_image_weights(str(tmp_path / "mine.pth")))
    torch.testing.assert_close(enc.conv1.weight, ref["conv1.weight"].sum(dim=1, keepdim=True))
    assert enc.weights_path == str(tmp_path / "mine.pth")
    assert parse_image_weights("none") is None and parse_image_weights(None) is None
    assert parse_image_weights("ImageNet") == "imagenet"
    torch.manual_seed(0)
    a = ImageEncoder(arch="resnet18", weights="none")
    assert a.weights_source == "none" and a.weights_path is None
    with pytest.raises(UserError, match="no such file; use imagenet, none"):
        parse_image_weights(str(tmp_path / "absent.pth"))


def test_offline_without_the_file_names_the_path_and_how_to_place_it(torch_home):
    import torchvision

    from amfmedit.errors import UserError
    from amfmedit.models.image import ImageEncoder, imagenet_weights_file

    _, calls = torch_home
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    with pytest.raises(UserError) as err:
        ImageEncoder(arch="resnet18", in_channels=1, weights="imagenet")
    msg = str(err.value)
    assert calls == [url]
    assert "\n" not in msg
    assert str(imagenet_weights_file("resnet18")) in msg and url in msg
    assert "copy it to" in msg and "--image-weights PATH" in msg
