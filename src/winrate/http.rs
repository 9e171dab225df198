//! An OpenAI-compatible chat-completions endpoint as the judge (what OP-TTRAV uses, GPT-4o-mini).
//!
//! Each judgement is `POST {url}/chat/completions` with `model`, the two messages, `max_tokens`
//! and, when asked, `logprobs` with the 5 top alternatives and `temperature` 1 (AlpacaEval 2's
//! `weighted_alpaca_eval_gpt4_turbo` request: the preference is read from the log-probabilities,
//! not the sampled token), else `temperature` 0 (the reply's text is the verdict). The key, when
//! its environment variable is set, goes in `Authorization: Bearer`. A
//! request that times out, fails to connect, is rate-limited (429, waiting at least its
//! `Retry-After`), hits a server error (5xx) or returns a body that is not a chat completion is
//! retried with exponential backoff (`backoff`, doubling, at most 60 s) up to `retries` times,
//! then the item fails with the last reason; another 4xx fails it at once, and 401 / 403 stop the
//! run (the key is wrong for every item). Replies are cached in a JSONL file, one line per
//! judgement appended as soon as it arrives, keyed by the SHA-256 of the request (URL, model,
//! messages, `max_tokens`, `logprobs`): a rerun reads them back and sends nothing, and a killed
//! run loses nothing but the request in flight (a line cut short by the kill is ignored).

use super::{PairJudge, Reply};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// How to reach the endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// The API base, e.g. `https://api.openai.com/v1` (`/chat/completions` is appended).
    pub url: String,
    pub model: String,
    /// The key (from the environment variable the command line names), if any.
    pub key: Option<String>,
    pub timeout: Duration,
    pub retries: usize,
    pub backoff: Duration,
    pub max_tokens: usize,
    /// Ask for the first token's top log-probabilities (AlpacaEval 2's weighted preference).
    pub logprobs: bool,
    pub concurrency: usize,
    /// The cache file (JSONL); `None` caches nothing.
    pub cache: Option<PathBuf>,
}

/// The endpoint judge.
pub struct HttpJudge {
    cfg: HttpConfig,
    agent: ureq::Agent,
    cache: Option<Cache>,
    /// Set when the endpoint refused the key: every later judgement fails at once.
    refused: Mutex<Option<String>>,
}

/// Cached replies by request hash, and the file new ones are appended to.
struct Cache {
    replies: Mutex<HashMap<String, Reply>>,
    file: Mutex<std::fs::File>,
    path: PathBuf,
}

impl Cache {
    fn open(path: &Path) -> Result<(Self, usize)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut replies = HashMap::new();
        let mut ignored = 0;
        if path.exists() {
            let text = std::fs::read(path).with_context(|| format!("cannot read judge cache {}", path.display()))?;
            for line in text.split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)) {
                let entry = serde_json::from_slice::<Value>(line).ok().and_then(|v| {
                    let key = v.get("key")?.as_str()?.to_string();
                    let reply: Reply = serde_json::from_value(v.get("reply")?.clone()).ok()?;
                    Some((key, reply))
                });
                match entry {
                    Some((k, r)) => {
                        replies.insert(k, r);
                    }
                    None => ignored += 1,
                }
            }
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("cannot open judge cache {}", path.display()))?;
        // A line cut short by a killed run: start the next one on a line of its own.
        if std::fs::read(path).is_ok_and(|b| b.last().is_some_and(|&c| c != b'\n')) {
            file.write_all(b"\n")?;
        }
        Ok((Self { replies: Mutex::new(replies), file: Mutex::new(file), path: path.to_path_buf() }, ignored))
    }

    fn get(&self, key: &str) -> Option<Reply> {
        self.replies.lock().ok()?.get(key).cloned()
    }

    fn put(&self, key: &str, request: &Value, reply: &Reply) -> Result<()> {
        let line = serde_json::to_string(&json!({"key": key, "model": request["model"], "reply": reply}))? + "\n";
        let mut f = self.file.lock().map_err(|_| anyhow::anyhow!("judge cache lock poisoned"))?;
        f.write_all(line.as_bytes()).and_then(|_| f.flush()).with_context(|| format!("cannot append to judge cache {}", self.path.display()))?;
        if let Ok(mut m) = self.replies.lock() {
            m.insert(key.to_string(), reply.clone());
        }
        Ok(())
    }
}

/// Why an attempt failed, and whether trying again may help.
enum Attempt {
    Retry(String, Option<Duration>),
    Fail(String),
    Fatal(String),
}

impl HttpJudge {
    /// The judge, with its cache read (lines that cannot be read are counted in the second value).
    pub fn new(cfg: HttpConfig) -> Result<(Self, usize)> {
        let (cache, ignored) = match &cfg.cache {
            Some(p) => {
                let (c, n) = Cache::open(p)?;
                (Some(c), n)
            }
            None => (None, 0),
        };
        let agent = ureq::AgentBuilder::new().timeout(cfg.timeout).build();
        Ok((Self { cfg, agent, cache, refused: Mutex::new(None) }, ignored))
    }

    fn endpoint(&self) -> String {
        format!("{}/chat/completions", self.cfg.url.trim_end_matches('/'))
    }

    fn request(&self, system: &str, user: &str) -> Value {
        let mut body = json!({
            "model": self.cfg.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": 0,
            "max_tokens": self.cfg.max_tokens,
        });
        if self.cfg.logprobs {
            body["temperature"] = json!(1);
            body["logprobs"] = json!(true);
            body["top_logprobs"] = json!(5);
        }
        body
    }

    fn cache_key(&self, request: &Value) -> String {
        let material = json!([self.endpoint(), request]).to_string();
        Sha256::digest(material.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    fn attempt(&self, request: &Value) -> std::result::Result<Reply, Attempt> {
        let mut req = self.agent.post(&self.endpoint()).set("Content-Type", "application/json");
        if let Some(key) = &self.cfg.key {
            req = req.set("Authorization", &format!("Bearer {key}"));
        }
        match req.send_string(&request.to_string()) {
            Ok(resp) => {
                let body = resp.into_string().map_err(|e| Attempt::Retry(format!("reading the reply failed: {e}"), None))?;
                parse_completion(&body).map_err(|e| Attempt::Retry(format!("not a chat completion ({e}): {}", excerpt(&body)), None))
            }
            Err(ureq::Error::Status(code, resp)) => {
                let retry_after = resp.header("Retry-After").and_then(|v| v.trim().parse::<f64>().ok()).filter(|s| s.is_finite() && *s >= 0.0).map(Duration::from_secs_f64);
                let body = resp.into_string().unwrap_or_default();
                let why = format!("HTTP {code}: {}", excerpt(&body));
                match code {
                    401 | 403 => Err(Attempt::Fatal(why)),
                    429 => Err(Attempt::Retry(why, retry_after)),
                    500..=599 => Err(Attempt::Retry(why, retry_after)),
                    _ => Err(Attempt::Fail(why)),
                }
            }
            Err(ureq::Error::Transport(t)) => Err(Attempt::Retry(format!("{t}"), None)),
        }
    }
}

impl PairJudge for HttpJudge {
    fn name(&self) -> String {
        self.cfg.model.clone()
    }

    fn concurrency(&self) -> usize {
        self.cfg.concurrency.max(1)
    }

    fn stopped(&self) -> Option<String> {
        self.refused.lock().ok().and_then(|r| r.clone())
    }

    fn reply(&self, system: &str, user: &str) -> Result<Reply> {
        let request = self.request(system, user);
        let key = self.cache_key(&request);
        if let Some(r) = self.cache.as_ref().and_then(|c| c.get(&key)) {
            return Ok(r);
        }
        if let Some(why) = self.stopped() {
            bail!("{why}");
        }
        let mut last = String::new();
        for attempt in 0..=self.cfg.retries {
            match self.attempt(&request) {
                Ok(reply) => {
                    if let Some(c) = &self.cache {
                        c.put(&key, &request, &reply)?;
                    }
                    return Ok(reply);
                }
                Err(Attempt::Fatal(why)) => {
                    let why = format!("the judge endpoint {} refused the request ({why}): check the key", self.endpoint());
                    if let Ok(mut r) = self.refused.lock() {
                        *r = Some(why.clone());
                    }
                    bail!("{why}");
                }
                Err(Attempt::Fail(why)) => bail!("{why}"),
                Err(Attempt::Retry(why, wait)) => {
                    last = why;
                    if attempt < self.cfg.retries {
                        let backoff = self.cfg.backoff.mul_f64(2f64.powi(attempt as i32)).min(Duration::from_secs(60));
                        std::thread::sleep(wait.map_or(backoff, |w| w.max(backoff)));
                    }
                }
            }
        }
        bail!("{} attempts failed, the last with: {last}", self.cfg.retries + 1)
    }
}

fn excerpt(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = one_line.chars().take(200).collect();
    if one_line.chars().count() > 200 {
        out.push_str("...");
    }
    out
}

/// The reply in a chat-completion body: `choices[0].message.content` and, if present,
/// `choices[0].logprobs.content[0].top_logprobs`.
pub fn parse_completion(body: &str) -> Result<Reply> {
    let v: Value = serde_json::from_str(body).map_err(|e| anyhow::anyhow!("not JSON: {e}"))?;
    let choice = v.get("choices").and_then(|c| c.get(0)).context("no choices[0]")?;
    parse_choice(choice)
}

/// The reply in one chat-completion choice (what AlpacaEval stores as an annotation's
/// `raw_completion`).
pub fn parse_choice(choice: &Value) -> Result<Reply> {
    let message = choice.get("message").context("no choices[0].message")?;
    let text = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(_) => bail!("choices[0].message.content is not text"),
    };
    let top_logprobs = choice
        .pointer("/logprobs/content/0/top_logprobs")
        .and_then(Value::as_array)
        .map(|alts| alts.iter().filter_map(|a| Some((a.get("token")?.as_str()?.to_string(), a.get("logprob")?.as_f64()?))).collect())
        .unwrap_or_default();
    Ok(Reply { text, top_logprobs })
}
