//! Which of the two outputs AlpacaEval shows first: it swaps them for an instruction when
//! Python's `random.Random("is_switched_outputs" + instruction + "0").choices([False, True])`
//! draws `True` (its `RandomSwitchTwoColumnsProcessor`, seeded by the instruction and the seed 0
//! that `PairwiseAnnotator` passes down; the published annotations agree on every item). This is that draw: Python's string seeding (the UTF-8 bytes followed by
//! their SHA-512, read as one big-endian integer, fed to MT19937's `init_by_array` in 32-bit words
//! from the least significant), then `random() >= 0.5`, which is the top bit of the first output.

use sha2::{Digest, Sha512};

const N: usize = 624;

/// MT19937 as CPython's `_random` module runs it.
struct Mt19937 {
    state: [u32; N],
    index: usize,
}

impl Mt19937 {
    fn with_seed(seed: u32) -> Self {
        let mut state = [0u32; N];
        state[0] = seed;
        for i in 1..N {
            state[i] = 1_812_433_253u32.wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30)).wrapping_add(i as u32);
        }
        Self { state, index: N }
    }

    fn with_key(key: &[u32]) -> Self {
        let mut mt = Self::with_seed(19_650_218);
        let s = &mut mt.state;
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            s[i] = (s[i] ^ (s[i - 1] ^ (s[i - 1] >> 30)).wrapping_mul(1_664_525)).wrapping_add(key[j]).wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                s[0] = s[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            s[i] = (s[i] ^ (s[i - 1] ^ (s[i - 1] >> 30)).wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                s[0] = s[N - 1];
                i = 1;
            }
        }
        s[0] = 0x8000_0000;
        mt
    }

    /// Python's `random.Random(text)` (seed version 2).
    fn with_python_str_seed(text: &str) -> Self {
        let mut bytes = text.as_bytes().to_vec();
        bytes.extend_from_slice(&Sha512::digest(text.as_bytes()));
        // The big-endian integer's 32-bit words, least significant first (leading zero bytes carry
        // no bits; zero itself is the key [0]).
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        let digits = &bytes[start..];
        let mut key: Vec<u32> = digits.rchunks(4).map(|c| c.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b))).collect();
        if key.is_empty() {
            key.push(0);
        }
        Self::with_key(&key)
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        for k in 0..N {
            let y = (self.state[k] & 0x8000_0000) | (self.state[(k + 1) % N] & 0x7fff_ffff);
            let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
            self.state[k] = self.state[(k + 397) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }
}

/// Whether AlpacaEval's annotator shows the model's output first (and the reference second) for
/// this instruction.
pub fn is_switched(instruction: &str) -> bool {
    let mut mt = Mt19937::with_python_str_seed(&format!("is_switched_outputs{instruction}0"));
    mt.next_u32() >> 31 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// First outputs of CPython 3.11's `random.Random(s).getrandbits(32)`.
    #[test]
    fn matches_python_string_seeding() {
        for (seed, first) in PYTHON_FIRST_WORDS {
            assert_eq!(Mt19937::with_python_str_seed(seed).next_u32(), *first, "seed {seed:?}");
        }
    }

    /// `random.Random("is_switched_outputs" + s + "0").choices([False, True])[0]` in CPython 3.11.
    #[test]
    fn matches_alpaca_eval_switches() {
        for (instruction, switched) in PYTHON_SWITCHES {
            assert_eq!(is_switched(instruction), *switched, "{instruction:?}");
        }
    }

    const PYTHON_FIRST_WORDS: &[(&str, u32)] = &[
        ("", 4_124_137_760),
        ("a", 1_168_357_962),
        ("abc", 3_315_820_543),
        ("is_switched_outputsWhat is 2+2?123", 165_295_962),
        ("h\u{e9}llo w\u{f6}rld \u{2603}", 2_247_605_410),
    ];
    const PYTHON_SWITCHES: &[(&str, bool)] = &[
        ("What are the names of some famous actors that started their careers on Broadway?", true),
        ("How do I make a cake?", false),
        ("2+2", false),
        ("", false),
        ("\u{c9}cris un po\u{e8}me.", false),
        ("Line one\nLine two", true),
        ("Name three plays.", false),
        ("Tell me a joke.", true),
        ("What is the capital of France?", false),
        ("Write a haiku about autumn rain.", false),
        ("Explain gravity.", false),
        ("Why is the sky blue?", true),
    ];

    /// A key longer than MT19937's state (1000 bytes and the digest: 267 words).
    #[test]
    fn long_seeds_wrap_the_key() {
        assert_eq!(Mt19937::with_python_str_seed(&"x".repeat(1000)).next_u32(), 701_128_487);
    }
}
