//! The Balcão page: judicial units, their rooms and hours.
