//! From text to a checked [`Scenario`]: parse, deserialize with paths, then check what the
//! types cannot say (which fields a process or distribution takes, ranges, provider rules)
//! and fill defaults. Every failure becomes a [`ScenarioError`] naming line and field.

use std::time::Duration;

use super::error::{parse_located, Locator, Problem, ScenarioError};
use super::fields::{check_name, not_used};
use super::limiters::{limiters, retry, thresholds, warnings};
use super::raw::{RawProvider, RawQuota, RawScenario};
use super::traffic::{batch_phases, phases, trace_phases, workload};
use super::{LatencySpec, ProviderKind, ProviderSpec, Quota, Scenario, Target};
use crate::provider::config::AZURE_DEFAULT_API_VERSION;

/// Azure's default short window for RPM.
const AZURE_RPM_WINDOW: Duration = Duration::from_secs(10);

pub(super) fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
    parse_located(text, origin, |raw: RawScenario, loc| {
        build(raw, loc, text, origin).map_err(|p| loc.error(p))
    })
}

fn build(
    raw: RawScenario,
    loc: &Locator<'_>,
    text: &str,
    origin: &str,
) -> Result<Scenario, Problem> {
    let name = check_name("name", &raw.name)?;
    let provider = provider(&raw.provider)?;
    // A trace's relative path is read from the scenario's directory.
    let base = std::path::Path::new(origin)
        .parent()
        .unwrap_or(std::path::Path::new(""));
    let workload = workload(&raw.workload, &provider, base)?;
    let phases = match (&workload.trace, &workload.requests) {
        (Some(t), _) => trace_phases(&raw.phases, raw.duration, t)?,
        (None, Some(file)) => batch_phases(&raw.phases, file)?,
        (None, None) => phases(&raw.phases, raw.duration)?,
    };
    let retry = retry(&raw.retry, loc)?;
    let limiters = limiters(&raw.limiters, &retry)?;
    let thresholds = thresholds(&raw.thresholds, &provider)?;
    let warnings = warnings(&provider, &workload, &limiters);
    Ok(Scenario {
        name,
        seed: raw.seed,
        provider,
        phases,
        workload,
        limiters,
        retry,
        thresholds,
        warnings,
        text: text.to_owned(),
        origin: origin.to_owned(),
    })
}

fn provider(p: &RawProvider) -> Result<ProviderSpec, Problem> {
    let field = |f: &str| format!("provider.{f}");
    if p.model.trim().is_empty() {
        return Err(Problem::new(field("model"), "must not be empty"));
    }
    let deployment = match (p.kind, &p.deployment) {
        (ProviderKind::Azure, Some(d)) if d.trim().is_empty() => {
            return Err(Problem::new(field("deployment"), "must not be empty"))
        }
        (ProviderKind::Azure, Some(d)) => Some(d.clone()),
        (ProviderKind::Azure, None) => Some(p.model.clone()),
        (_, Some(_)) => {
            return Err(Problem::new(
                field("deployment"),
                "only for kind = \"azure\"",
            ))
        }
        (_, None) => None,
    };
    if p.kind != ProviderKind::Azure {
        not_used(
            field("api_version"),
            p.api_version.is_some(),
            &format!("by kind = \"{}\" (Azure only)", p.kind.id()),
        )?;
    }
    let mut spec = ProviderSpec {
        kind: p.kind,
        target: p.target,
        model: p.model.clone(),
        deployment,
        url: None,
        api_key_env: None,
        api_version: None,
        quota: None,
        latency: None,
    };
    match p.target {
        Target::Mock => {
            let why = "by target = \"mock\" (only for target = \"url\")";
            not_used(field("url"), p.url.is_some(), why)?;
            not_used(field("api_key_env"), p.api_key_env.is_some(), why)?;
            not_used(field("api_version"), p.api_version.is_some(), why)?;
            spec.quota = p.quota.as_ref().map(|q| quota(p.kind, q)).transpose()?;
            spec.latency = p.latency.as_ref().map(latency).transpose()?;
        }
        Target::Url => {
            let why = "by target = \"url\" (a real server has its own; only for target = \"mock\")";
            not_used(field("quota"), p.quota.is_some(), why)?;
            not_used(field("latency"), p.latency.is_some(), why)?;
            let url = p
                .url
                .as_deref()
                .ok_or_else(|| Problem::new(field("url"), "required for target = \"url\""))?;
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| Problem::new(field("url"), format!("invalid URL {url:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(Problem::new(
                    field("url"),
                    format!("invalid URL {url:?}: must start with http:// or https://"),
                ));
            }
            spec.url = Some(url.to_owned());
            let env = p
                .api_key_env
                .clone()
                .unwrap_or_else(|| p.kind.plugin().api_key_env().to_owned());
            let env_ok = !env.is_empty()
                && !env.starts_with(|c: char| c.is_ascii_digit())
                && env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !env_ok {
                return Err(Problem::new(
                    field("api_key_env"),
                    format!("invalid environment variable name {env:?}"),
                ));
            }
            spec.api_key_env = Some(env);
            if p.kind == ProviderKind::Azure {
                let v = p
                    .api_version
                    .clone()
                    .unwrap_or_else(|| AZURE_DEFAULT_API_VERSION.to_owned());
                if v.trim().is_empty() {
                    return Err(Problem::new(field("api_version"), "must not be empty"));
                }
                spec.api_version = Some(v);
            }
        }
    }
    Ok(spec)
}

fn latency(l: &super::raw::RawLatency) -> Result<LatencySpec, Problem> {
    let ttft_p99 = l.ttft_p99.unwrap_or(l.ttft_median);
    if ttft_p99 < l.ttft_median {
        return Err(Problem::new(
            "provider.latency.ttft_p99",
            format!("{ttft_p99:?} is below ttft_median {:?}", l.ttft_median),
        ));
    }
    Ok(LatencySpec {
        ttft_median: l.ttft_median,
        ttft_p99,
        per_token: l.per_token.unwrap_or(Duration::ZERO),
    })
}

fn quota(kind: ProviderKind, q: &RawQuota) -> Result<Quota, Problem> {
    let field = |f: &str| format!("provider.quota.{f}");
    for (name, v) in [
        ("rpm", q.rpm),
        ("tpm", q.tpm),
        ("itpm", q.itpm),
        ("otpm", q.otpm),
    ] {
        if v == Some(0) {
            return Err(Problem::new(field(name), "must be at least 1"));
        }
    }
    if kind != ProviderKind::Anthropic {
        let why = format!(
            "by kind = \"{}\" (Anthropic's input and output token limits)",
            kind.id()
        );
        not_used(field("itpm"), q.itpm.is_some(), &why)?;
        not_used(field("otpm"), q.otpm.is_some(), &why)?;
    }
    match kind {
        ProviderKind::Anthropic => {
            not_used(
                field("tpm"),
                q.tpm.is_some(),
                "by kind = \"anthropic\" (it limits itpm and otpm apart)",
            )?;
            if let Some(w) = q.rpm_window {
                if w.is_zero() || w > Duration::from_secs(60) {
                    return Err(Problem::new(
                        field("rpm_window"),
                        format!("{w:?} must be within (0, 60s]"),
                    ));
                }
            }
            Ok(Quota {
                rpm: q.rpm,
                rpm_window: q.rpm_window,
                itpm: q.itpm,
                otpm: q.otpm,
                ..Quota::default()
            })
        }
        ProviderKind::Openai => {
            not_used(
                field("rpm_window"),
                q.rpm_window.is_some(),
                "by kind = \"openai\" (OpenAI quotas replenish per minute; Azure only)",
            )?;
            Ok(Quota {
                rpm: q.rpm,
                tpm: q.tpm,
                ..Quota::default()
            })
        }
        ProviderKind::Azure => {
            let tpm = q.tpm.ok_or_else(|| {
                Problem::new(
                    field("tpm"),
                    "required for kind = \"azure\": a deployment's quota is its TPM",
                )
            })?;
            let rpm = match q.rpm {
                Some(rpm) => rpm,
                None => match tpm.saturating_mul(6) / 1000 {
                    0 => {
                        return Err(Problem::new(
                            field("tpm"),
                            format!("{tpm} TPM gives 0 RPM at 6 RPM per 1000 TPM: use at least 167 or set rpm"),
                        ))
                    }
                    rpm => rpm,
                },
            };
            let window = q.rpm_window.unwrap_or(AZURE_RPM_WINDOW);
            if window.is_zero() || window > Duration::from_secs(60) {
                return Err(Problem::new(
                    field("rpm_window"),
                    format!("{window:?} must be within (0, 60s]"),
                ));
            }
            Ok(Quota {
                rpm: Some(rpm),
                tpm: Some(tpm),
                rpm_window: Some(window),
                ..Quota::default()
            })
        }
    }
}
