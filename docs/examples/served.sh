vllm serve Qwen/Qwen2-VL-72B-Instruct-AWQ --served-model-name Qwen/Qwen2-VL-72B-Instruct --tensor-parallel-size 2
mltag analyze ~/photos --models wd14,clip,qwen2vl-72b-vllm --ask both
mltag analyze ~/photos --models wd14,openai-compatible \
    --option openai-compatible.base_url=http://gpu-box:8000/v1 --option openai-compatible.model=llava-v1.6
export OPENAI_API_KEY=...            # never on the command line: mltag refuses --option ...api_key=
mltag analyze ~/photos --models wd14,openai-gpt4o --show-timing
mltag health openai-compatible --option openai-compatible.base_url=http://127.0.0.1:8080/v1
mltag analyze ~/photos --models wd14,llava --option llava.model=llava:13b   # a model a running Ollama serves
