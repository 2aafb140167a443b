//! Open or closed: a unit's status at a moment in the court's local time, and
//! the Portuguese sentences the page shows for it.
//!
//! The page's script repeats this computation in the browser from the same
//! data (`closed` dates and weekly hours), so the two must agree; the browser
//! test checks that they do.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike};

use super::file::Court;
use super::holidays::{in_recess, national_holidays, RECESS_REASON};
use super::hours::{Day, Interval, Minute, WeeklyHours};

/// How far ahead the next opening is looked for (and closed dates listed for
/// the page's script).
pub const HORIZON_DAYS: i64 = 400;

/// Every date on which the court's counters are closed in a window of dates,
/// with the reason shown to citizens.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    closed: BTreeMap<NaiveDate, String>,
    pub first: Option<NaiveDate>,
    pub last: Option<NaiveDate>,
}

impl Calendar {
    /// Closed dates from `first` to `last` inclusive: national holidays, the
    /// recess when the court closes for it, and the court's own dates.
    pub fn new(court: &Court, first: NaiveDate, last: NaiveDate) -> Calendar {
        let mut closed = BTreeMap::new();
        for year in first.year()..=last.year() {
            for day in national_holidays(year) {
                if day.date >= first && day.date <= last {
                    closed.insert(day.date, day.reason);
                }
            }
        }
        for closure in &court.closed {
            let mut date = closure.from.max(first);
            while date <= closure.until.min(last) {
                closed.entry(date).or_insert_with(|| closure.reason.clone());
                date += Duration::days(1);
            }
        }
        if court.recess_closes {
            let mut date = first;
            while date <= last {
                if in_recess(date) {
                    closed
                        .entry(date)
                        .or_insert_with(|| RECESS_REASON.to_string());
                }
                date += Duration::days(1);
            }
        }
        Calendar {
            closed,
            first: Some(first),
            last: Some(last),
        }
    }

    /// The window a page rendered at `today` needs: from yesterday (a visitor
    /// a day behind) to [`HORIZON_DAYS`] ahead.
    pub fn around(court: &Court, today: NaiveDate) -> Calendar {
        Calendar::new(
            court,
            today - Duration::days(1),
            today + Duration::days(HORIZON_DAYS),
        )
    }

    pub fn closed_reason(&self, date: NaiveDate) -> Option<&str> {
        self.closed.get(&date).map(String::as_str)
    }

    pub fn closed_days(&self) -> impl Iterator<Item = (&NaiveDate, &String)> {
        self.closed.iter()
    }
}

/// A unit's status at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Open now, until the end of the current interval.
    Open { until: Minute },
    /// Closed now; opens next at this local date and time, if within the horizon.
    Closed { opens: Option<NaiveDateTime> },
}

/// The intervals of `date`, none when the calendar closes it.
pub fn intervals_on<'a>(
    hours: &'a WeeklyHours,
    calendar: &Calendar,
    date: NaiveDate,
) -> &'a [Interval] {
    if calendar.closed_reason(date).is_some() {
        &[]
    } else {
        hours.on(Day::from_chrono(date.weekday()))
    }
}

/// The status at local time `now`.
pub fn status(hours: &WeeklyHours, calendar: &Calendar, now: NaiveDateTime) -> Status {
    let today = now.date();
    let minute = Minute((now.hour() * 60 + now.minute()) as u16);
    let intervals = intervals_on(hours, calendar, today);
    if let Some(open) = intervals.iter().find(|i| i.contains(minute)) {
        return Status::Open { until: open.end };
    }
    if let Some(next) = intervals.iter().find(|i| i.start > minute) {
        return Status::Closed {
            opens: Some(at(today, next.start)),
        };
    }
    for ahead in 1..=HORIZON_DAYS {
        let date = today + Duration::days(ahead);
        if let Some(first) = intervals_on(hours, calendar, date).first() {
            return Status::Closed {
                opens: Some(at(date, first.start)),
            };
        }
    }
    Status::Closed { opens: None }
}

fn at(date: NaiveDate, minute: Minute) -> NaiveDateTime {
    date.and_hms_opt(0, 0, 0).unwrap() + Duration::minutes(minute.0 as i64)
}

/// When a closed unit opens, relative to `now`: "hoje às 13:00", "amanhã às
/// 08:00", "segunda às 08:00" within a week, "quinta, 07/01, às 08:00" beyond.
pub fn when_opens(opens: NaiveDateTime, now: NaiveDateTime) -> String {
    let days = (opens.date() - now.date()).num_days();
    let time = format!("{:02}:{:02}", opens.hour(), opens.minute());
    let day = Day::from_chrono(opens.weekday()).name_pt();
    match days {
        0 => format!("hoje às {time}"),
        1 => format!("amanhã às {time}"),
        2..=6 => format!("{day} às {time}"),
        _ => format!("{day}, {}, às {time}", opens.format("%d/%m")),
    }
}

/// The two texts the page shows for a status: the status line and the
/// button's label.
pub fn labels(status: &Status, now: NaiveDateTime) -> (String, String) {
    match status {
        Status::Open { until } => (
            format!("Aberto agora · até {until}"),
            "Entrar no balcão".to_string(),
        ),
        Status::Closed { opens: Some(opens) } => {
            let when = when_opens(*opens, now);
            (format!("Fechado · abre {when}"), format!("Abre {when}"))
        }
        Status::Closed { opens: None } => (
            "Fechado · sem atendimento previsto".to_string(),
            "Sem atendimento previsto".to_string(),
        ),
    }
}

/// "Hoje: 08:00 às 12:00 e 13:00 às 18:00", or why there is no counter today.
pub fn today_text(hours: &WeeklyHours, calendar: &Calendar, date: NaiveDate) -> String {
    if let Some(reason) = calendar.closed_reason(date) {
        return format!("Hoje: fechado ({reason})");
    }
    let intervals = hours.on(Day::from_chrono(date.weekday()));
    if intervals.is_empty() {
        return "Hoje: sem atendimento".to_string();
    }
    format!("Hoje: {}", spoken(intervals))
}

/// Intervals as a sentence: "08:00 às 12:00 e 13:00 às 18:00".
pub fn spoken(intervals: &[Interval]) -> String {
    let parts: Vec<String> = intervals
        .iter()
        .map(|i| format!("{} às {}", i.start, i.end))
        .collect();
    match parts.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} e {last}", init.join(", ")),
    }
}

/// The court's local wall-clock time at a UTC instant.
pub fn local_now<Z: TimeZone>(zone: &Z, instant: DateTime<chrono::Utc>) -> NaiveDateTime {
    instant.with_timezone(zone).naive_local()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::file::{parse_zone, Closure};

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn t(y: i32, m: u32, day: u32, h: u32, min: u32) -> NaiveDateTime {
        d(y, m, day).and_hms_opt(h, min, 0).unwrap()
    }

    fn court() -> Court {
        Court::default()
    }

    fn cal(court: &Court) -> Calendar {
        Calendar::new(court, d(2025, 1, 1), d(2028, 12, 31))
    }

    fn split_day() -> WeeklyHours {
        WeeklyHours::parse("seg-sex 08:00-12:00 13:00-18:00").unwrap()
    }

    #[test]
    fn edges_of_intervals() {
        let c = cal(&court());
        let h = split_day();
        // Monday 2 March 2026.
        let at = |hh, mm| status(&h, &c, t(2026, 3, 2, hh, mm));
        assert_eq!(
            at(7, 59),
            Status::Closed {
                opens: Some(t(2026, 3, 2, 8, 0))
            }
        );
        assert_eq!(
            at(8, 0),
            Status::Open {
                until: Minute::hm(12, 0)
            }
        );
        assert_eq!(
            at(11, 59),
            Status::Open {
                until: Minute::hm(12, 0)
            }
        );
        assert_eq!(
            at(12, 0),
            Status::Closed {
                opens: Some(t(2026, 3, 2, 13, 0))
            }
        );
        assert_eq!(
            at(13, 0),
            Status::Open {
                until: Minute::hm(18, 0)
            }
        );
        assert_eq!(
            at(18, 0),
            Status::Closed {
                opens: Some(t(2026, 3, 3, 8, 0))
            }
        );
        // Friday evening opens on Monday.
        let friday = t(2026, 3, 6, 18, 30);
        let s = status(&h, &c, friday);
        assert_eq!(
            s,
            Status::Closed {
                opens: Some(t(2026, 3, 9, 8, 0))
            }
        );
        assert_eq!(labels(&s, friday).0, "Fechado · abre segunda às 08:00");
        assert_eq!(labels(&s, friday).1, "Abre segunda às 08:00");
        let noon = t(2026, 3, 2, 12, 30);
        assert_eq!(
            labels(&status(&h, &c, noon), noon).0,
            "Fechado · abre hoje às 13:00"
        );
        let open = t(2026, 3, 2, 9, 0);
        assert_eq!(
            labels(&status(&h, &c, open), open),
            ("Aberto agora · até 12:00".into(), "Entrar no balcão".into())
        );
    }

    #[test]
    fn closed_on_holidays() {
        let c = cal(&court());
        let h = split_day();
        // Carnival Monday and Tuesday 2026 closed; Ash Wednesday opens.
        let now = t(2026, 2, 16, 10, 0);
        let s = status(&h, &c, now);
        assert_eq!(
            s,
            Status::Closed {
                opens: Some(t(2026, 2, 18, 8, 0))
            }
        );
        assert_eq!(labels(&s, now).0, "Fechado · abre quarta às 08:00");
        assert_eq!(today_text(&h, &c, now.date()), "Hoje: fechado (Carnaval)");
        // Good Friday 2026 (3 April): opens Monday 6 April.
        assert_eq!(
            status(&h, &c, t(2026, 4, 2, 18, 0)),
            Status::Closed {
                opens: Some(t(2026, 4, 6, 8, 0))
            }
        );
        // Corpus Christi, Thursday 4 June 2026.
        assert_eq!(
            status(&h, &c, t(2026, 6, 4, 9, 0)),
            Status::Closed {
                opens: Some(t(2026, 6, 5, 8, 0))
            }
        );
    }

    #[test]
    fn closed_in_the_recess_when_the_court_says_so() {
        let h = split_day();
        let now = t(2026, 12, 21, 10, 0);
        let with = cal(&court());
        let s = status(&h, &with, now);
        assert_eq!(
            s,
            Status::Closed {
                opens: Some(t(2027, 1, 7, 8, 0))
            }
        );
        assert_eq!(labels(&s, now).0, "Fechado · abre quinta, 07/01, às 08:00");
        assert_eq!(
            today_text(&h, &with, now.date()),
            "Hoje: fechado (Recesso forense)"
        );

        let mut open_court = court();
        open_court.recess_closes = false;
        let without = cal(&open_court);
        assert_eq!(
            status(&h, &without, now),
            Status::Open {
                until: Minute::hm(12, 0)
            }
        );
        // Christmas still closes.
        assert!(matches!(
            status(&h, &without, t(2026, 12, 25, 10, 0)),
            Status::Closed { .. }
        ));
    }

    #[test]
    fn court_closed_dates() {
        let mut c = court();
        c.closed.push(Closure {
            from: d(2026, 4, 1),
            until: d(2026, 4, 2),
            reason: "Semana Santa".into(),
        });
        let cal = cal(&c);
        let h = split_day();
        assert_eq!(
            status(&h, &cal, t(2026, 3, 31, 18, 0)),
            Status::Closed {
                opens: Some(t(2026, 4, 6, 8, 0))
            }
        );
        assert_eq!(
            today_text(&h, &cal, d(2026, 4, 1)),
            "Hoje: fechado (Semana Santa)"
        );
    }

    #[test]
    fn brazilian_timezones_at_one_instant() {
        let h = WeeklyHours::parse("seg-sex 08:00-12:00").unwrap();
        let c = cal(&court());
        // 12:30 UTC on Monday 2 March 2026.
        let instant = chrono::Utc.with_ymd_and_hms(2026, 3, 2, 12, 30, 0).unwrap();
        let local = |zone: &str| local_now(&parse_zone(zone).unwrap(), instant);
        assert_eq!(local("America/Noronha"), t(2026, 3, 2, 10, 30));
        assert_eq!(local("America/Sao_Paulo"), t(2026, 3, 2, 9, 30));
        assert_eq!(local("America/Manaus"), t(2026, 3, 2, 8, 30));
        assert_eq!(local("America/Rio_Branco"), t(2026, 3, 2, 7, 30));
        assert!(matches!(
            status(&h, &c, local("America/Manaus")),
            Status::Open { .. }
        ));
        assert_eq!(
            status(&h, &c, local("America/Rio_Branco")),
            Status::Closed {
                opens: Some(t(2026, 3, 2, 8, 0))
            }
        );
        // 14:15 UTC: Noronha has closed at 12:00, Rio Branco is open.
        let late = chrono::Utc.with_ymd_and_hms(2026, 3, 2, 14, 15, 0).unwrap();
        let noronha = local_now(&parse_zone("America/Noronha").unwrap(), late);
        let rio_branco = local_now(&parse_zone("America/Rio_Branco").unwrap(), late);
        assert_eq!(
            status(&h, &c, noronha),
            Status::Closed {
                opens: Some(t(2026, 3, 3, 8, 0))
            }
        );
        assert_eq!(
            status(&h, &c, rio_branco),
            Status::Open {
                until: Minute::hm(12, 0)
            }
        );
        // A UTC date change: 02:00 UTC Tuesday is still Monday evening in Manaus.
        let night = chrono::Utc.with_ymd_and_hms(2026, 3, 3, 2, 0, 0).unwrap();
        assert_eq!(
            local_now(&parse_zone("America/Manaus").unwrap(), night),
            t(2026, 3, 2, 22, 0)
        );
    }

    #[test]
    fn sentences() {
        let now = t(2026, 3, 2, 10, 0);
        assert_eq!(when_opens(t(2026, 3, 3, 8, 0), now), "amanhã às 08:00");
        assert_eq!(when_opens(t(2026, 3, 8, 8, 0), now), "domingo às 08:00");
        assert_eq!(
            when_opens(t(2026, 3, 9, 8, 0), now),
            "segunda, 09/03, às 08:00"
        );
        let h = split_day();
        assert_eq!(
            today_text(&h, &cal(&court()), d(2026, 3, 2)),
            "Hoje: 08:00 às 12:00 e 13:00 às 18:00"
        );
        assert_eq!(
            today_text(&h, &cal(&court()), d(2026, 3, 7)),
            "Hoje: sem atendimento"
        );
    }
}
