use super::*;

/// Geometry of the timeline: label column, plot, and lanes.
pub(super) const TL_WIDTH: f64 = 800.0;
pub(super) const TL_LABELS: f64 = 150.0;
pub(super) const TL_RIGHT: f64 = 12.0;
pub(super) const TL_TOP: f64 = 6.0;
pub(super) const TL_LANE: f64 = 24.0;
pub(super) const TL_AXIS: f64 = 22.0;

/// A host's runs of the last 30 days: one lane per schedule, one mark per run placed by when it
/// started (see `run_time`), coloured by phase, each linking to its run.
pub(super) fn timeline(now: DateTime<Utc>, runs: &[&Backup]) -> Markup {
    let start = now - Duration::days(WINDOW_DAYS);
    let mut lanes: BTreeMap<String, Vec<(DateTime<Utc>, &Backup)>> = BTreeMap::new();
    for backup in runs {
        if let Some(t) = run_time(backup).filter(|t| *t >= start) {
            lanes
                .entry(run_label(backup))
                .or_default()
                .push((t.min(now), backup));
        }
    }
    if lanes.is_empty() {
        return html! { p.empty { "No runs in the last 30 days." } };
    }
    let plot_bottom = TL_TOP + lanes.len() as f64 * TL_LANE;
    let height = plot_bottom + TL_AXIS;
    let x = |t: DateTime<Utc>| window_x(start, t, TL_LABELS, TL_WIDTH - TL_RIGHT);
    html! {
        svg.timeline viewBox=(format!("0 0 {TL_WIDTH} {}", fixed(height))) role="img"
            aria-label="Runs of the last 30 days, one mark per run" {
            (day_ticks(TL_LABELS, TL_WIDTH - TL_RIGHT, TL_TOP, plot_bottom))
            @for (i, (lane, marks)) in lanes.iter().enumerate() {
                @let y = TL_TOP + i as f64 * TL_LANE;
                line.lane x1=(fixed(TL_LABELS)) x2=(fixed(TL_WIDTH - TL_RIGHT))
                    y1=(fixed(y + TL_LANE / 2.0)) y2=(fixed(y + TL_LANE / 2.0)) {}
                text x=(fixed(TL_LABELS - 8.0)) y=(fixed(y + TL_LANE / 2.0 + 4.0))
                    text-anchor="end" {
                    title { (lane) }
                    (ellipsize(lane, 22))
                }
                @for (t, backup) in marks {
                    @let phase = backup.status.as_ref().and_then(|s| s.run.phase);
                    a href=(run_url(namespace_of(*backup), name_of(*backup))) {
                        rect class=(format!("mark {}", phase_tone(phase)))
                            x=(fixed(x(*t) - 2.5)) y=(fixed(y + 4.0)) width="5"
                            height=(fixed(TL_LANE - 8.0)) rx="1.5" {
                            title { (lane) " · " (phase_name(phase)) " · " (exact(*t)) }
                        }
                    }
                }
            }
        }
    }
}

/// Geometry of a size chart.
pub(super) const SC_WIDTH: f64 = 800.0;
pub(super) const SC_HEIGHT: f64 = 170.0;
pub(super) const SC_LEFT: f64 = 76.0;
pub(super) const SC_RIGHT: f64 = 12.0;
pub(super) const SC_TOP: f64 = 12.0;
pub(super) const SC_AXIS: f64 = 22.0;

/// A repo's stored size over the last 30 days, as a line; `name` is the repo's name as the
/// caption shows it.
pub(super) fn size_chart(now: DateTime<Utc>, series: &RepoSeries, name: Markup) -> Markup {
    let latest = series.points.last().map(|(_, size)| *size);
    line_chart(
        now,
        html! { strong { (name) } @if let Some(size) = latest { " · " (bytes(size)) } },
        &format!("Size of repo {} over the last 30 days", series.repo),
        &series.points,
        bytes,
    )
}

/// Values over the last 30 days, as a line, each read out with `unit`.
pub(super) fn line_chart(
    now: DateTime<Utc>,
    caption: Markup,
    label: &str,
    points: &[(DateTime<Utc>, u64)],
    unit: fn(u64) -> String,
) -> Markup {
    let start = now - Duration::days(WINDOW_DAYS);
    // The largest value sits a tenth below the top; the axis starts at zero.
    let peak = points.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let scale = peak as f64 * 1.1;
    let bottom = SC_HEIGHT - SC_AXIS;
    let x = |t: DateTime<Utc>| window_x(start, t, SC_LEFT, SC_WIDTH - SC_RIGHT);
    let y = |v: u64| bottom - v as f64 / scale * (bottom - SC_TOP);
    let line: Vec<String> = points
        .iter()
        .map(|(t, v)| format!("{},{}", fixed(x(*t)), fixed(y(*v))))
        .collect();
    let dots = if points.len() <= MAX_CHART_DOTS {
        points
    } else {
        &points[points.len() - 1..]
    };
    html! {
        figure.chart {
            figcaption { (caption) }
            @if points.is_empty() {
                p.empty { "Nothing reported in the last 30 days." }
            } @else {
                svg.sizes viewBox=(format!("0 0 {SC_WIDTH} {SC_HEIGHT}")) role="img"
                    aria-label=(label) {
                    (day_ticks(SC_LEFT, SC_WIDTH - SC_RIGHT, SC_TOP, bottom))
                    @for v in [0, peak / 2, peak] {
                        @let gy = fixed(y(v));
                        line.grid x1=(fixed(SC_LEFT)) x2=(fixed(SC_WIDTH - SC_RIGHT))
                            y1=(gy) y2=(gy) {}
                        text x=(fixed(SC_LEFT - 6.0)) y=(gy) dy="4" text-anchor="end" {
                            (unit(v))
                        }
                    }
                    polyline.line points=(line.join(" ")) {}
                    @for (t, v) in dots {
                        circle.dot cx=(fixed(x(*t))) cy=(fixed(y(*v))) r="3" {
                            title { (unit(*v)) " · " (exact(*t)) }
                        }
                    }
                }
            }
        }
    }
}

/// Vertical lines every five days across a 30-day plot, labelled below it.
pub(super) fn day_ticks(x0: f64, x1: f64, top: f64, bottom: f64) -> Markup {
    html! {
        @for days_ago in (0..=WINDOW_DAYS).rev().step_by(5) {
            @let x = fixed(x0 + (WINDOW_DAYS - days_ago) as f64 / WINDOW_DAYS as f64 * (x1 - x0));
            line.grid x1=(x) x2=(x) y1=(fixed(top)) y2=(fixed(bottom)) {}
            text x=(x) y=(fixed(bottom + 15.0))
                text-anchor=(match days_ago { 0 => "end", WINDOW_DAYS => "start", _ => "middle" }) {
                @if days_ago == 0 { "now" } @else { (days_ago) " d ago" }
            }
        }
    }
}

/// Where `t` falls between `x0` (30 days ago) and `x1` (now).
pub(super) fn window_x(start: DateTime<Utc>, t: DateTime<Utc>, x0: f64, x1: f64) -> f64 {
    let span = Duration::days(WINDOW_DAYS).num_seconds() as f64;
    let frac = ((t - start).num_seconds() as f64 / span).clamp(0.0, 1.0);
    x0 + frac * (x1 - x0)
}

pub(super) fn fixed(v: f64) -> String {
    format!("{v:.1}")
}

pub(super) fn ellipsize(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let head: String = s.chars().take(max - 1).collect();
        format!("{head}…")
    }
}
