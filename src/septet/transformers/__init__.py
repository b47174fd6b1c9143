"""septet.transformers: transformer models written here that load published checkpoints.

Encoders (BERT/MiniLM, RoBERTa, DistilBERT) with their task heads, decoders (GPT-2, Llama and
its relatives), safetensors / .bin / sharded / GGUF loading, tokenizers, generation, sentence
embeddings and fine-tuning. Every name below is imported on first use, so importing this
package does not import torch.
"""

from septet.common.lazy import lazy_exports

_EXPORTS = {
    # outputs
    "BaseModelOutput": ".outputs",
    "MaskedLMOutput": ".outputs",
    "CausalLMOutput": ".outputs",
    "SequenceClassifierOutput": ".outputs",
    "TokenClassifierOutput": ".outputs",
    "QuestionAnsweringOutput": ".outputs",
    # loading and saving
    "ModelConfig": ".config",
    "PreTrainedModel": ".modeling",
    "resolve_model_path": ".checkpoint",
    "read_state_dict": ".checkpoint",
    "read_config_dict": ".checkpoint",
    "load_checkpoint": ".checkpoint",
    "minilm_path": ".bundled",
    "smollm2_gguf_path": ".bundled",
    # encoders
    "BertConfig": ".bert",
    "BertModel": ".bert",
    "BertForMaskedLM": ".bert",
    "BertForSequenceClassification": ".bert",
    "BertForTokenClassification": ".bert",
    "BertForQuestionAnswering": ".bert",
    "RobertaConfig": ".roberta",
    "RobertaModel": ".roberta",
    "RobertaForMaskedLM": ".roberta",
    "RobertaForSequenceClassification": ".roberta",
    "RobertaForTokenClassification": ".roberta",
    "RobertaForQuestionAnswering": ".roberta",
    "XLMRobertaConfig": ".roberta",
    "XLMRobertaModel": ".roberta",
    "XLMRobertaForMaskedLM": ".roberta",
    "XLMRobertaForSequenceClassification": ".roberta",
    "XLMRobertaForTokenClassification": ".roberta",
    "XLMRobertaForQuestionAnswering": ".roberta",
    "DistilBertConfig": ".distilbert",
    "DistilBertModel": ".distilbert",
    "DistilBertForMaskedLM": ".distilbert",
    "DistilBertForSequenceClassification": ".distilbert",
    "DistilBertForTokenClassification": ".distilbert",
    "DistilBertForQuestionAnswering": ".distilbert",
    # decoders
    "GPT2Config": ".gpt2",
    "GPT2Model": ".gpt2",
    "GPT2LMHeadModel": ".gpt2",
    "GPT2ForSequenceClassification": ".gpt2",
    "LlamaConfig": ".llama",
    "LlamaModel": ".llama",
    "LlamaForCausalLM": ".llama",
    "LlamaForSequenceClassification": ".llama",
    "MistralConfig": ".llama",
    "MistralModel": ".llama",
    "MistralForCausalLM": ".llama",
    "MistralForSequenceClassification": ".llama",
    "Qwen2Config": ".llama",
    "Qwen2Model": ".llama",
    "Qwen2ForCausalLM": ".llama",
    "Qwen2ForSequenceClassification": ".llama",
    "KVCache": ".kv_cache",
    "quantize_for_decoding": ".quantize",
    # dispatch by config.json model_type
    "AutoConfig": ".auto",
    "AutoModel": ".auto",
    "AutoModelForMaskedLM": ".auto",
    "AutoModelForCausalLM": ".auto",
    "AutoModelForSequenceClassification": ".auto",
    "AutoModelForTokenClassification": ".auto",
    "AutoModelForQuestionAnswering": ".auto",
    # GGUF
    "read_gguf_checkpoint": ".gguf",
    "read_gguf_tokenizer_metadata": ".gguf",
    "read_gguf_metadata": ".gguf",
    # tokenizers
    "Tokenizer": ".tokenizer",
    # generation
    "GenerationConfig": ".generation",
    "generate": ".generation",
    "stream_generate": ".generation",
    "generate_text": ".generation",
    "stream_text": ".generation",
    # sentence embeddings
    "SentenceEmbedder": ".embeddings",
    # fine-tuning
    "FinetuneConfig": ".finetune",
    "FinetuneResult": ".finetune",
    "finetune_text_classifier": ".finetune",
    "read_classification_jsonl": ".finetune",
    "TextClassifier": ".finetune",
    # tasks over a model and its tokenizer
    "fill_mask": ".fill_mask",
    "convert_checkpoint": ".convert",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
