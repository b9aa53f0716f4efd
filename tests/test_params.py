import gptoss_edu as ge
from gptoss_edu.params import kv_cache_bytes_per_token


def test_published_figures_exactly():
    a = ge.count_parameters(ge.ModelConfig.gpt_oss_20b())
    b = ge.count_parameters(ge.ModelConfig.gpt_oss_120b())
    assert (a.total, a.active) == (20_914_757_184, 3_608_304_384)
    assert (b.total, b.active) == (116_829_156_672, 5_132_846_592)
    assert (a.checkpoint_bytes, b.checkpoint_bytes) == (13_761_264_768, 65_248_815_744)
    assert round(a.bf16_bytes / 1e9, 1) == 41.8 and round(b.bf16_bytes / 1e9, 1) == 233.7
    assert kv_cache_bytes_per_token(ge.ModelConfig.gpt_oss_20b()) == 48 * 1024
    assert kv_cache_bytes_per_token(ge.ModelConfig.gpt_oss_120b()) == 72 * 1024


def test_count_agrees_with_the_module():
    for cfg in (
        ge.ModelConfig.tiny(),
        ge.ModelConfig.tiny().replace(num_experts=5, num_hidden_layers=3),
    ):
        m = ge.GptOss(cfg)
        n = sum(p.numel() for p in m.parameters())
        assert ge.count_parameters(cfg).total == n
        expert = sum(p.numel() for k, p in m.named_parameters() if ".mlp.mlp" in k)
        assert ge.count_parameters(cfg).experts == expert
