//! Days on which every counter is closed: Brazil's national holidays for any
//! year, the forensic recess, and the court's own closed dates.
//!
//! Included as national (the same for every court, so computed here):
//! 1 Jan, Carnival Monday and Tuesday (a federal "ponto facultativo", but the
//! courts close), Good Friday, 21 Apr, 1 May, Corpus Christi, 7 Sep, 12 Oct,
//! 2 Nov, 15 Nov, 20 Nov (Consciência Negra, national from 2024 on) and 25 Dec.
//! Left to each court's closed dates, because they differ between courts:
//! Holy Wednesday and Thursday, 11 Aug and 8 Dec (federal courts, Lei 5.010/66),
//! Ash Wednesday morning, state and municipal holidays.
//! The recess runs from 20 December to 6 January inclusive.

use chrono::{Datelike, Duration, NaiveDate};

/// One day on which the counters are closed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedDay {
    pub date: NaiveDate,
    pub reason: String,
}

/// Western (Gregorian) Easter Sunday of `year`.
pub fn easter(year: i32) -> NaiveDate {
    // The Gregorian computus, in the anonymous (Meeus/Jones/Butcher) form.
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32).expect("computus gives a real date")
}

/// National holidays of `year`, sorted by date; two holidays on one date are
/// one entry whose reason names both.
pub fn national_holidays(year: i32) -> Vec<ClosedDay> {
    let fixed = |month: u32, day: u32| NaiveDate::from_ymd_opt(year, month, day).unwrap();
    let easter = easter(year);
    let mut days = vec![
        (fixed(1, 1), "Confraternização Universal"),
        (easter - Duration::days(48), "Carnaval"),
        (easter - Duration::days(47), "Carnaval"),
        (easter - Duration::days(2), "Sexta-feira Santa"),
        (fixed(4, 21), "Tiradentes"),
        (fixed(5, 1), "Dia do Trabalho"),
        (easter + Duration::days(60), "Corpus Christi"),
        (fixed(9, 7), "Independência do Brasil"),
        (fixed(10, 12), "Nossa Senhora Aparecida"),
        (fixed(11, 2), "Finados"),
        (fixed(11, 15), "Proclamação da República"),
        (fixed(12, 25), "Natal"),
    ];
    // Lei 14.759/2023 made 20 November national from 2024 on.
    if year >= 2024 {
        days.push((
            fixed(11, 20),
            "Dia Nacional de Zumbi e da Consciência Negra",
        ));
    }
    days.sort_by_key(|(date, _)| *date);

    let mut merged: Vec<ClosedDay> = Vec::new();
    for (date, reason) in days {
        match merged.last_mut() {
            Some(last) if last.date == date => {
                last.reason = format!("{} e {}", last.reason, reason);
            }
            _ => merged.push(ClosedDay {
                date,
                reason: reason.to_string(),
            }),
        }
    }
    merged
}

/// Whether `date` falls in the forensic recess (20 December to 6 January).
pub fn in_recess(date: NaiveDate) -> bool {
    (date.month() == 12 && date.day() >= 20) || (date.month() == 1 && date.day() <= 6)
}

pub const RECESS_REASON: &str = "Recesso forense";

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    /// Movable dates as published in the federal government's holiday
    /// calendars (Carnival Monday, Good Friday, Corpus Christi).
    type MonthDay = (u32, u32);
    const PUBLISHED: &[(i32, MonthDay, MonthDay, MonthDay)] = &[
        (2024, (2, 12), (3, 29), (5, 30)),
        (2025, (3, 3), (4, 18), (6, 19)),
        (2026, (2, 16), (4, 3), (6, 4)),
        (2027, (2, 8), (3, 26), (5, 27)),
        (2028, (2, 28), (4, 14), (6, 15)),
        (2029, (2, 12), (3, 30), (5, 31)),
        (2030, (3, 4), (4, 19), (6, 20)),
    ];

    #[test]
    fn movable_holidays_match_published_dates_2024_to_2030() {
        for &(year, carnival, good_friday, corpus) in PUBLISHED {
            let days = national_holidays(year);
            let has = |(m, day): (u32, u32), reason: &str| {
                days.iter()
                    .any(|c| c.date == d(year, m, day) && c.reason.contains(reason))
            };
            let monday = d(year, carnival.0, carnival.1);
            let tuesday = monday.succ_opt().unwrap();
            assert!(has(carnival, "Carnaval"), "{year} carnival monday");
            assert!(
                has((tuesday.month(), tuesday.day()), "Carnaval"),
                "{year} carnival tuesday"
            );
            assert_eq!(monday.weekday(), chrono::Weekday::Mon);
            assert!(has(good_friday, "Sexta-feira Santa"), "{year} good friday");
            assert!(has(corpus, "Corpus Christi"), "{year} corpus christi");
        }
    }

    #[test]
    fn carnival_2026_good_friday_and_corpus_christi() {
        let days: Vec<NaiveDate> = national_holidays(2026).iter().map(|c| c.date).collect();
        assert!(days.contains(&d(2026, 2, 16)));
        assert!(days.contains(&d(2026, 2, 17)));
        assert!(
            !days.contains(&d(2026, 2, 18)),
            "Ash Wednesday is not closed"
        );
        assert!(days.contains(&d(2026, 4, 3)));
        assert!(days.contains(&d(2026, 6, 4)));
    }

    #[test]
    fn fixed_holidays_and_consciencia_negra_from_2024() {
        for year in 2024..=2030 {
            let days = national_holidays(year);
            assert_eq!(days.len(), 13, "{year}: {days:?}");
            for (m, day) in [
                (1, 1),
                (4, 21),
                (5, 1),
                (9, 7),
                (10, 12),
                (11, 2),
                (11, 15),
                (11, 20),
                (12, 25),
            ] {
                assert!(
                    days.iter().any(|c| c.date == d(year, m, day)),
                    "{year}-{m}-{day}"
                );
            }
        }
        assert!(!national_holidays(2023)
            .iter()
            .any(|c| c.date == d(2023, 11, 20)));
    }

    #[test]
    fn easter_far_from_now() {
        assert_eq!(easter(2000), d(2000, 4, 23));
        assert_eq!(easter(2038), d(2038, 4, 25));
        assert_eq!(easter(2285), d(2285, 3, 22));
        // Good Friday on Tiradentes: one entry naming both.
        let days = national_holidays(2000);
        let both = days.iter().find(|c| c.date == d(2000, 4, 21)).unwrap();
        assert!(both.reason.contains("Tiradentes") && both.reason.contains("Santa"));
    }

    #[test]
    fn recess_edges() {
        assert!(!in_recess(d(2026, 12, 19)));
        assert!(in_recess(d(2026, 12, 20)));
        assert!(in_recess(d(2027, 1, 6)));
        assert!(!in_recess(d(2027, 1, 7)));
    }
}
