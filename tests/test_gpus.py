import pytest

from estimator import gpus
from estimator.errors import PlannerError

REQUIRED = ["T4", "V100-SXM2-32GB", "A10G", "L4", "L40S", "RTX-A6000", "RTX-6000-Ada", "RTX-3090", "RTX-4090",
            "RTX-5090", "A100-SXM4-40GB", "A100-PCIE-40GB", "A100-SXM4-80GB", "A100-PCIE-80GB", "H100-PCIE",
            "H100-SXM", "H100-NVL", "H200", "GH200", "B200", "MI250X", "MI300X", "MI325X"]


def test_catalog_covers_the_required_accelerators():
    names = [g.name for g in gpus.catalog()]
    assert len(names) >= 25 and set(REQUIRED) <= set(names)
    for g in gpus.catalog():
        assert g.memory_gib > 0 and g.memory_bandwidth_gbs > 0 and (g.bf16_tflops or g.fp16_tflops)
        assert g.interconnect.kind in ("nvlink", "xgmi", "pcie")
        assert isinstance(g.compute_units, int) and 10 <= g.compute_units <= 304, g.name
    # a few datasheet figures: SMs on NVIDIA parts, CUs on AMD ones (one MI250X die, as vLLM sees it)
    units = {name: gpus.lookup(name).compute_units for name in ("H100-SXM", "H100-PCIE", "A100-SXM4-80GB", "L4",
                                                                 "RTX-4090", "B200", "MI300X", "MI250X")}
    assert units == {"H100-SXM": 132, "H100-PCIE": 114, "A100-SXM4-80GB": 108, "L4": 58, "RTX-4090": 128,
                     "B200": 148, "MI300X": 304, "MI250X": 110}


@pytest.mark.parametrize("name,expected", [
    ("NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB"),
    ("NVIDIA A100-SXM4-40GB", "A100-SXM4-40GB"),
    ("NVIDIA A100 80GB PCIe", "A100-PCIE-80GB"),
    ("NVIDIA H100 80GB HBM3", "H100-SXM"),
    ("NVIDIA H100 PCIe", "H100-PCIE"),
    ("Tesla T4", "T4"),
    ("NVIDIA GeForce RTX 4090", "RTX-4090"),
    ("rtx 4090", "RTX-4090"),
    ("h200", "H200"),
    ("H20", "H20"),
    ("AMD Instinct MI300X", "MI300X"),
    ("nvidia l40s", "L40S"),
    # nvidia-smi's and rocm-smi's names: a Ti, a SUPER and a China SKU are parts of their own
    ("NVIDIA GeForce RTX 3090 Ti", "RTX-3090-Ti"),
    ("NVIDIA GeForce RTX 3090", "RTX-3090"),
    ("NVIDIA GeForce RTX 4070 Ti SUPER", "RTX-4070-Ti-Super"),
    ("NVIDIA GeForce RTX 4070 Ti", "RTX-4070-Ti"),
    ("NVIDIA GeForce RTX 4090 D", "RTX-4090-D"),
    ("NVIDIA RTX 5000 Ada Generation", "RTX-5000-Ada"),
    ("NVIDIA RTX A4500", "RTX-A4500"),
    ("AMD Instinct MI250", "MI250"),
    ("AMD Instinct MI250X", "MI250X"),
    ("AMD Radeon RX 7900 XT", "RX-7900-XT"),
    ("AMD Radeon RX 7900 XTX", "RX-7900-XTX"),
    ("AMD Radeon AI PRO R9700", "AI-PRO-R9700"),
    # Blackwell Ultra, CDNA 4, Jetson and the older workstation and 8 GB parts people still serve on
    ("NVIDIA B300 SXM6 AC", "B300"),
    ("NVIDIA GB300", "GB300"),
    ("AMD Instinct MI350X", "MI350X"),
    ("NVIDIA RTX PRO 5000 Blackwell", "RTX-PRO-5000"),
    ("NVIDIA Thor", "Jetson-AGX-Thor"),
    ("Quadro RTX 8000", "Quadro-RTX-8000"),
    ("Tesla V100S-PCIE-32GB", "V100S-PCIE-32GB"),
    ("NVIDIA GeForce RTX 4060", "RTX-4060"),
    ("NVIDIA GeForce RTX 3060 Ti", "RTX-3060-Ti"),
    ("AMD Radeon RX 9070", "RX-9070"),
    ("AMD Radeon PRO W7800", "Radeon-PRO-W7800"),
    # the names cloud and hosting logs print: Azure's MI300X virtual function, a Max-Q workstation card, China parts
    ("AMD Instinct MI300X VF", "MI300X"),
    ("NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition", "RTX-PRO-6000"),
    ("NVIDIA GeForce RTX 5090 D", "RTX-5090-D"),
    ("NVIDIA H800 PCIe", "H800-PCIE"),
    ("NVIDIA A800 80GB PCIe", "A800-PCIE-80GB"),
    ("NVIDIA RTX 4000 SFF Ada Generation", "RTX-4000-SFF-Ada"),
    # laptop parts are parts of their own beside the desktop cards of the same number
    ("NVIDIA GeForce RTX 4060 Laptop GPU", "RTX-4060-Laptop"),
    ("NVIDIA GeForce RTX 3060 Laptop GPU", "RTX-3060-Laptop"),
    ("NVIDIA GeForce RTX 3060", "RTX-3060-12GB"),
    ("NVIDIA GeForce RTX 4080 Laptop GPU", "RTX-4080-Laptop"),
    ("NVIDIA GeForce RTX 3050", "RTX-3050-8GB"),
    # a SUPER card and a card's larger-memory edition are parts of their own
    ("NVIDIA GeForce RTX 4080 SUPER", "RTX-4080-Super"),
    ("NVIDIA GeForce RTX 4080", "RTX-4080"),
    ("NVIDIA RTX A2000 12GB", "RTX-A2000-12GB"),
    ("NVIDIA RTX A2000", "RTX-A2000"),
    ("NVIDIA A16", "A16"),
    ("AMD Radeon RX 7900 GRE", "RX-7900-GRE"),
    ("A100 SXM", "A100-SXM4-80GB"),
])
def test_names_match_case_insensitively_including_nvidia_smi_names(name, expected):
    assert gpus.lookup(name).name == expected


def test_a_memory_size_picks_between_parts_that_share_nvidia_smis_name():
    assert gpus.resolve_written("RTX 4060 Ti 8GB").name == "RTX-4060-Ti-8GB"
    assert gpus.resolve_written("RTX 4060 Ti 16GB").name == "RTX-4060-Ti-16GB"
    assert gpus.resolve_written("RTX 5060 Ti 8GB").name == "RTX-5060-Ti-8GB"
    assert gpus.resolve_written("B300 288GB").memory_gib > gpus.lookup("B200").memory_gib
    # a size written after a form factor whose alias names the other size: that part's sibling of the size written
    assert gpus.resolve_written("A100 SXM 40GB").name == "A100-SXM4-40GB"
    assert gpus.resolve_written("A100 SXM 80GB").name == "A100-SXM4-80GB"
    assert gpus.resolve_written("A100 40GB PCIe").name == "A100-PCIE-40GB"
    assert gpus.resolve_written("V100 16GB").name == "V100-SXM2-16GB"
    with pytest.raises(PlannerError, match="A100-SXM4-80GB has 80 GB, not 32 GB"):
        gpus.resolve_written("A100 SXM 32GB")


def test_h20_is_not_an_h200():
    assert gpus.lookup("H20").memory_gib < 100 < gpus.lookup("H200").memory_gib


def test_unknown_name_lists_the_closest_known():
    with pytest.raises(PlannerError) as err:
        gpus.lookup("H300")
    assert str(err.value) == ("unknown GPU 'H300': closest known: H200, H800, B300; use one of the names in "
                              "`estimator gpus`, or --gpu-memory-gib for a custom device")


def test_custom_memory_keeps_the_named_gpus_speed():
    custom = gpus.custom(40.0, like=gpus.lookup("H100"))
    assert custom.memory_gib == 40.0 and custom.memory_bandwidth_gbs == 3350 and custom.source == "custom"
    assert custom.compute_units == 132 and gpus.custom(40.0).compute_units is None
    with pytest.raises(PlannerError):
        gpus.custom(0)


def test_auto_detection_without_a_driver_is_one_clear_error():
    # This machine has nvidia-ml-py but no NVIDIA driver: the real NVML init fails.
    with pytest.raises(PlannerError) as err:
        gpus.detect()
    assert str(err.value).startswith("--gpu auto found no NVIDIA driver (")
