//! Weekly public hours of one unit: for each weekday, zero or more intervals
//! in the court's local time.
//!
//! Both the units file and the CSV spell them as one short line that court
//! staff can read and type, groups of days followed by their intervals:
//! `seg-sex 08:00-12:00 13:00-18:00; sáb 08:00-12:00`. Days are the Portuguese
//! abbreviations (accents optional), as a range `seg-sex` or `seg a sex`, or a
//! list `seg,qua,sex`; times are `08:00` or `8h`/`8h30`.

use std::fmt;

use serde::Serialize;
use unicode_normalization::UnicodeNormalization;

/// A day of the week, Monday first as the court's week is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    pub const ALL: [Day; 7] = [
        Day::Mon,
        Day::Tue,
        Day::Wed,
        Day::Thu,
        Day::Fri,
        Day::Sat,
        Day::Sun,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_chrono(day: chrono::Weekday) -> Day {
        Day::ALL[day.num_days_from_monday() as usize]
    }

    /// Short form written in the units file: `seg`, `ter`, ... `sáb`, `dom`.
    pub fn abbreviation(self) -> &'static str {
        ["seg", "ter", "qua", "qui", "sex", "sáb", "dom"][self.index()]
    }

    /// Name used in sentences: "abre segunda às 08:00".
    pub fn name_pt(self) -> &'static str {
        [
            "segunda", "terça", "quarta", "quinta", "sexta", "sábado", "domingo",
        ][self.index()]
    }

    /// Key used in `units.json`.
    pub fn key(self) -> &'static str {
        [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ][self.index()]
    }

    fn parse(word: &str) -> Option<Day> {
        let folded = fold(word);
        let stem: String = folded.chars().take(3).collect();
        let day = match stem.as_str() {
            "seg" => Day::Mon,
            "ter" => Day::Tue,
            "qua" => Day::Wed,
            "qui" => Day::Thu,
            "sex" => Day::Fri,
            "sab" => Day::Sat,
            "dom" => Day::Sun,
            _ => return None,
        };
        // Accept the abbreviation or the full name ("segunda", "segunda-feira"),
        // nothing else that merely starts the same way.
        let full = fold(day.name_pt());
        let ok = folded == stem
            || folded == full
            || folded == format!("{full}-feira")
            || folded == format!("{full} feira");
        ok.then_some(day)
    }
}

/// Minutes since local midnight, 0 to 1440.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Minute(pub u16);

impl Minute {
    pub fn hm(hour: u16, minute: u16) -> Minute {
        Minute(hour * 60 + minute)
    }

    fn parse(text: &str) -> Option<Minute> {
        let text = text.trim().to_lowercase();
        let (h, m) = if let Some((h, m)) = text.split_once(':') {
            (h, m)
        } else if let Some((h, m)) = text.split_once('h') {
            (h, if m.is_empty() { "00" } else { m })
        } else {
            return None;
        };
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return None;
        }
        let h: u16 = h.parse().ok()?;
        let m: u16 = m.parse().ok()?;
        if m >= 60 || h > 24 || (h == 24 && m != 0) {
            return None;
        }
        Some(Minute::hm(h, m))
    }
}

impl fmt::Display for Minute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// Half-open interval `[start, end)`: open at `start`, closed at `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interval {
    pub start: Minute,
    pub end: Minute,
}

impl Interval {
    pub fn contains(&self, at: Minute) -> bool {
        self.start <= at && at < self.end
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Interval", 2)?;
        st.serialize_field("start", &self.start.to_string())?;
        st.serialize_field("end", &self.end.to_string())?;
        st.end()
    }
}

/// Intervals for each day, sorted and not overlapping.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WeeklyHours {
    days: [Vec<Interval>; 7],
}

/// Why an hours line could not be read; the text is shown to court staff.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HoursError(pub String);

impl WeeklyHours {
    pub fn on(&self, day: Day) -> &[Interval] {
        &self.days[day.index()]
    }

    pub fn is_empty(&self) -> bool {
        self.days.iter().all(Vec::is_empty)
    }

    /// Reads an hours line such as `seg-sex 08:00-12:00 13:00-18:00; sáb 8h-12h`.
    pub fn parse(text: &str) -> Result<WeeklyHours, HoursError> {
        let mut hours = WeeklyHours::default();
        let mut any = false;
        for group in text.split(';') {
            let group = group.trim();
            if group.is_empty() {
                continue;
            }
            any = true;
            let split = group.find(|c: char| c.is_ascii_digit()).ok_or_else(|| {
                HoursError(format!(
                    "\"{group}\" não tem horário; escreva por exemplo \"seg-sex 08:00-12:00\""
                ))
            })?;
            let (days_text, times_text) = group.split_at(split);
            let days = parse_days(days_text, group)?;
            let intervals = parse_intervals(times_text, group)?;
            for day in days {
                if !hours.days[day.index()].is_empty() {
                    return Err(HoursError(format!(
                        "{} aparece em mais de um grupo; junte os horários do dia num só grupo",
                        day.name_pt()
                    )));
                }
                hours.days[day.index()] = intervals.clone();
            }
        }
        if !any {
            return Err(HoursError(
                "horário vazio; escreva por exemplo \"seg-sex 08:00-14:00\"".into(),
            ));
        }
        Ok(hours)
    }
}

fn parse_days(text: &str, group: &str) -> Result<Vec<Day>, HoursError> {
    let text = fold(text.trim());
    if text.is_empty() {
        return Err(HoursError(format!(
            "\"{group}\" não diz os dias; comece com os dias, por exemplo \"seg-sex\""
        )));
    }
    let text = text.replace(" a ", "-").replace(" e ", ",");
    let mut days = Vec::new();
    for piece in text.split(',') {
        let piece = piece.trim();
        if piece.is_empty() {
            continue;
        }
        let unknown = |word: &str| {
            HoursError(format!(
                "dia \"{word}\" desconhecido em \"{group}\"; use seg, ter, qua, qui, sex, sáb, dom"
            ))
        };
        // "segunda-feira" holds a hyphen that is not a range.
        let range = piece
            .replace("-feira", "")
            .split('-')
            .map(|s| s.trim().to_string())
            .collect::<Vec<_>>();
        match range.as_slice() {
            [one] => days.push(Day::parse(one).ok_or_else(|| unknown(one))?),
            [from, to] => {
                let from = Day::parse(from).ok_or_else(|| unknown(from))?;
                let to = Day::parse(to).ok_or_else(|| unknown(to))?;
                if to < from {
                    return Err(HoursError(format!(
                        "intervalo de dias {}-{} ao contrário em \"{group}\"; a semana vai de seg a dom",
                        from.abbreviation(),
                        to.abbreviation()
                    )));
                }
                days.extend(Day::ALL[from.index()..=to.index()].iter().copied());
            }
            _ => return Err(unknown(piece)),
        }
    }
    Ok(days)
}

fn parse_intervals(text: &str, group: &str) -> Result<Vec<Interval>, HoursError> {
    // Let "08:00 - 12:00", "08:00–12:00" and "8h às 12h" read like "08:00-12:00".
    let mut text = text.replace(['–', '—'], "-").to_lowercase();
    for joiner in [" às ", " as ", " até ", " ate "] {
        text = text.replace(joiner, "-");
    }
    while text.contains(" -") || text.contains("- ") {
        text = text.replace(" -", "-").replace("- ", "-");
    }
    let mut intervals = Vec::new();
    for token in text.split(|c: char| c == ',' || c.is_whitespace()) {
        if token.is_empty() || token == "e" {
            continue;
        }
        let bad = || {
            HoursError(format!(
                "horário \"{token}\" ilegível em \"{group}\"; escreva início-fim, por exemplo 08:00-12:00"
            ))
        };
        let (start, end) = token.split_once('-').ok_or_else(bad)?;
        let start = Minute::parse(start).ok_or_else(bad)?;
        let end = Minute::parse(end).ok_or_else(bad)?;
        if end <= start {
            return Err(HoursError(format!(
                "o intervalo {start}-{end} termina antes de começar em \"{group}\""
            )));
        }
        intervals.push(Interval { start, end });
    }
    intervals.sort_by_key(|i| i.start);
    for pair in intervals.windows(2) {
        if pair[1].start < pair[0].end {
            return Err(HoursError(format!(
                "os intervalos {} e {} se sobrepõem em \"{group}\"",
                pair[0], pair[1]
            )));
        }
    }
    if intervals.is_empty() {
        return Err(HoursError(format!("\"{group}\" não tem horário")));
    }
    Ok(intervals)
}

impl fmt::Display for WeeklyHours {
    /// The canonical line: consecutive days with the same intervals joined as
    /// a range, days without hours left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut groups: Vec<String> = Vec::new();
        let mut i = 0;
        while i < 7 {
            if self.days[i].is_empty() {
                i += 1;
                continue;
            }
            let mut j = i;
            while j + 1 < 7 && self.days[j + 1] == self.days[i] {
                j += 1;
            }
            let days = if i == j {
                Day::ALL[i].abbreviation().to_string()
            } else {
                format!(
                    "{}-{}",
                    Day::ALL[i].abbreviation(),
                    Day::ALL[j].abbreviation()
                )
            };
            let times: Vec<String> = self.days[i].iter().map(Interval::to_string).collect();
            groups.push(format!("{days} {}", times.join(" ")));
            i = j + 1;
        }
        write!(f, "{}", groups.join("; "))
    }
}

/// Lowercase, accents removed: how names and days are compared.
pub fn fold(text: &str) -> String {
    text.nfkd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .collect::<String>()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_groups_ranges_and_lists() {
        let h = WeeklyHours::parse("seg-sex 08:00-12:00 13:00-18:00; sáb 8h-12h").unwrap();
        assert_eq!(h.on(Day::Mon).len(), 2);
        assert_eq!(h.on(Day::Fri)[1].end, Minute::hm(18, 0));
        assert_eq!(h.on(Day::Sat)[0].start, Minute::hm(8, 0));
        assert!(h.on(Day::Sun).is_empty());
        assert_eq!(
            h.to_string(),
            "seg-sex 08:00-12:00 13:00-18:00; sáb 08:00-12:00"
        );

        let h = WeeklyHours::parse("Segunda a Sexta, 7h30 às 13h30").unwrap();
        assert_eq!(h.to_string(), "seg-sex 07:30-13:30");
        let h = WeeklyHours::parse("seg,qua e sex 08:00 - 12:00").unwrap();
        assert_eq!(
            h.to_string(),
            "seg 08:00-12:00; qua 08:00-12:00; sex 08:00-12:00"
        );
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        for bad in [
            "",
            "seg-sex",
            "08:00-12:00",
            "seg-sex 12:00-08:00",
            "seg-sex 08:00-12:00 11:00-13:00",
            "sex-seg 08:00-12:00",
            "segx 08:00-12:00",
            "seg 25:00-26:00",
            "seg 08:00-12:00; seg 13:00-14:00",
            "seg 0800-1200",
        ] {
            assert!(WeeklyHours::parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}
