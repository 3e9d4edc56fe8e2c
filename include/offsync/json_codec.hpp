// offsync — tolerant JSON conversion of described structs, and a time conversion.
#pragma once

#include <offsync/error.hpp>

#include <boost/describe/members.hpp>
#include <boost/describe/modifiers.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>
#include <boost/mp11/algorithm.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <ratio>
#include <string>
#include <string_view>
#include <type_traits>

namespace offsync {

/// True for a class type whose public data members Boost.Describe lists.
template <class T>
concept described_struct =
    std::is_class_v<T> && boost::describe::has_describe_members<T>::value;

/// How one member type converts to and from JSON. The primary template defers to Boost.JSON
/// (`value_from` / `try_value_to`), so any type Boost.JSON converts works unchanged; offsync
/// adds described structs (decoded tolerantly), `std::chrono` system time points (ISO 8601 UTC)
/// and `std::optional` (null when empty). Specialise it for a type Boost.JSON cannot convert.
///
/// `decode` returns false and sets `why` when the JSON cannot become a `T`; it never throws.
template <class T>
struct field_codec {
    static boost::json::value encode(const T& v) { return boost::json::value_from(v); }
    static bool decode(const boost::json::value& jv, T& out, std::string& why) {
        auto r = boost::json::try_value_to<T>(jv);
        if (!r) {
            why = "has the wrong type";
            return false;
        }
        out = std::move(*r);
        return true;
    }
};

template <described_struct T>
boost::json::object to_json_object(const T& value);
template <described_struct T>
diagnostics from_json_object(const boost::json::object& obj, T& out);

template <described_struct T>
struct field_codec<T> {
    static boost::json::value encode(const T& v) { return to_json_object(v); }
    static bool decode(const boost::json::value& jv, T& out, std::string& why) {
        const auto* obj = jv.if_object();
        if (!obj) {
            why = "must be an object";
            return false;
        }
        auto d = from_json_object(*obj, out);
        if (d) why = d.message;
        return !d;
    }
};

template <class T>
struct field_codec<std::optional<T>> {
    static boost::json::value encode(const std::optional<T>& v) {
        return v ? field_codec<T>::encode(*v) : boost::json::value(nullptr);
    }
    static bool decode(const boost::json::value& jv, std::optional<T>& out, std::string& why) {
        if (jv.is_null()) {
            out.reset();
            return true;
        }
        T inner{};
        if (!field_codec<T>::decode(jv, inner, why)) return false;
        out = std::move(inner);
        return true;
    }
};

namespace detail {
inline bool parse_digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
    if (pos + n > s.size()) return false;
    out = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
        out = out * 10 + (s[i] - '0');
    }
    return true;
}
} // namespace detail

/// Instants at millisecond precision: what the wire's ISO 8601 text carries. Years 0000 to 9999
/// (the text's four digits) fit in it without overflow, whatever the clock's own duration.
using wire_time = std::chrono::sys_time<std::chrono::milliseconds>;

/// Formats a time point as ISO 8601 UTC with milliseconds: "2026-11-25T15:25:15.123Z" (finer
/// precision is cut, toward the past). Years outside 0000 to 9999 have no such text: the year
/// is then written with more digits or a sign, which `parse_iso8601` refuses, so the codec
/// refuses such a time before it formats it.
template <class Duration>
std::string format_iso8601(std::chrono::time_point<std::chrono::system_clock, Duration> tp) {
    using namespace std::chrono;
    const auto ms = floor<milliseconds>(tp);
    const auto day = floor<days>(ms);
    const year_month_day ymd{day};
    const hh_mm_ss hms{ms - day};
    char buf[48];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", int(ymd.year()),
                  unsigned(ymd.month()), unsigned(ymd.day()), int(hms.hours().count()),
                  int(hms.minutes().count()), int(hms.seconds().count()),
                  int(hms.subseconds().count()));
    return buf;
}

/// Parses "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)". Only UTC is accepted: a sync protocol
/// that stores local offsets invites two replicas to disagree about one instant. Digits past
/// the millisecond are dropped. Whether the instant fits a given time point type is
/// `time_point_holds`'s question.
inline std::optional<wire_time> parse_iso8601(std::string_view s) {
    using namespace std::chrono;
    int y, mo, d, h, mi, sec;
    if (s.size() < 20 || !detail::parse_digits(s, 0, 4, y) || s[4] != '-' ||
        !detail::parse_digits(s, 5, 2, mo) || s[7] != '-' || !detail::parse_digits(s, 8, 2, d) ||
        (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !detail::parse_digits(s, 11, 2, h) ||
        s[13] != ':' || !detail::parse_digits(s, 14, 2, mi) || s[16] != ':' ||
        !detail::parse_digits(s, 17, 2, sec))
        return std::nullopt;
    std::size_t pos = 19;
    long long frac_ms = 0;
    if (pos < s.size() && s[pos] == '.') {
        ++pos;
        int digits = 0;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
            if (digits < 3) frac_ms = frac_ms * 10 + (s[pos] - '0');
            ++digits;
            ++pos;
        }
        if (digits == 0) return std::nullopt;
        for (; digits < 3; ++digits) frac_ms *= 10;
    }
    const auto rest = s.substr(pos);
    if (rest != "Z" && rest != "z" && rest != "+00:00") return std::nullopt;
    const year_month_day ymd{year{y}, month{unsigned(mo)}, day{unsigned(d)}};
    if (!ymd.ok() || h > 23 || mi > 59 || sec > 60) return std::nullopt;
    return wire_time{sys_days{ymd}} + hours{h} + minutes{mi} + seconds{sec} +
           milliseconds{frac_ms};
}

/// Whether `tp` is an instant that a `time_point<system_clock, Duration>` holds. The system
/// clock's own nanoseconds reach only from 1677-09-21 to 2262-04-11: converting an instant
/// outside them would wrap around through a signed overflow into a wrong date.
template <class Duration>
constexpr bool time_point_holds(wire_time tp) {
    using namespace std::chrono;
    using target = time_point<system_clock, Duration>;
    if constexpr (std::chrono::treat_as_floating_point_v<typename Duration::rep>) {
        return true; // a floating-point count holds every four-digit year
    } else if constexpr (std::ratio_less_v<typename Duration::period, std::milli>) {
        // Finer than milliseconds: its range is the narrower one. Compared in milliseconds,
        // where both of its ends fit.
        return tp >= ceil<milliseconds>(target::min()) && tp <= floor<milliseconds>(target::max());
    } else {
        // As coarse or coarser: counted in 64 bits first (no overflow for four-digit years),
        // then compared with what the field's own representation holds.
        using rep = typename Duration::rep;
        const auto count =
            floor<duration<std::int64_t, typename Duration::period>>(tp).time_since_epoch().count();
        return count >= std::int64_t(std::numeric_limits<rep>::lowest()) &&
               (std::is_unsigned_v<rep> && sizeof(rep) >= sizeof(std::int64_t)
                    ? true
                    : count <= std::int64_t(std::numeric_limits<rep>::max()));
    }
}

namespace detail {
/// Whether `tp` lies in the years 0000 to 9999, asked in its own type's terms (as seconds in
/// long double), so that no conversion can overflow on the way: a coarse type's extreme
/// values (`sys_seconds::max()` as a "never") do not fit milliseconds.
template <class Duration>
bool in_iso8601_years(std::chrono::time_point<std::chrono::system_clock, Duration> tp) {
    using period = typename Duration::period;
    const long double seconds = static_cast<long double>(tp.time_since_epoch().count()) *
                                period::num / period::den;
    constexpr long double year_0 = -62167219200.0L;     // 0000-01-01T00:00:00Z
    constexpr long double year_10000 = 253402300800.0L; // 10000-01-01T00:00:00Z
    return seconds >= year_0 && seconds < year_10000;
}
} // namespace detail

/// The instants a `time_point<system_clock, Duration>` field holds on the wire, the narrower of
/// its own range and the four-digit years, as text for a message: "1677-09-21T00:12:43.146Z
/// to 2262-04-11T23:47:16.854Z" for the system clock's own.
template <class Duration>
std::string time_point_range_text() {
    using namespace std::chrono;
    using target = time_point<system_clock, Duration>;
    wire_time low = wire_time{sys_days{year{0} / 1 / 1}};
    wire_time high = wire_time{sys_days{year{9999} / 12 / 31}} + hours{24} - milliseconds{1};
    if constexpr (std::chrono::treat_as_floating_point_v<typename Duration::rep>) {
        // every four-digit year
    } else if constexpr (std::ratio_less_v<typename Duration::period, std::milli>) {
        low = std::max(low, ceil<milliseconds>(target::min()));
        high = std::min(high, floor<milliseconds>(target::max()));
    } else {
        // A narrow count (32-bit seconds end in 2038): its ends in milliseconds, computed in
        // long double since a coarse period's ends may not fit 64 bits; the last one held
        // is the whole last period.
        using rep = typename Duration::rep;
        constexpr long double period_ms = 1000.0L * Duration::period::num / Duration::period::den;
        const long double lowest = std::numeric_limits<rep>::lowest() * period_ms;
        const long double highest = (std::numeric_limits<rep>::max() + 1.0L) * period_ms - 1;
        if (lowest > low.time_since_epoch().count())
            low = wire_time{milliseconds{std::int64_t(lowest)}};
        if (highest < high.time_since_epoch().count())
            high = wire_time{milliseconds{std::int64_t(highest)}};
    }
    return format_iso8601(low) + " to " + format_iso8601(high);
}

template <class Duration>
struct field_codec<std::chrono::time_point<std::chrono::system_clock, Duration>> {
    using time_type = std::chrono::time_point<std::chrono::system_clock, Duration>;
    /// Throws `sync_error` (`invalid_field`) for an instant outside the years 0000 to 9999,
    /// which ISO 8601 text cannot carry (only a `Duration` coarser than the system clock's
    /// reaches them).
    static boost::json::value encode(const time_type& v) {
        if (!detail::in_iso8601_years(v))
            throw sync_error(make_error_code(errc::invalid_field),
                             "a time outside the years 0000 to 9999 has no ISO 8601 text");
        return boost::json::value(format_iso8601(std::chrono::floor<std::chrono::milliseconds>(v)));
    }
    static bool decode(const boost::json::value& jv, time_type& out, std::string& why) {
        const auto* s = jv.if_string();
        auto tp = s ? parse_iso8601(std::string_view(*s)) : std::nullopt;
        if (!tp) {
            why = "must be an ISO 8601 UTC time such as \"2026-11-25T15:25:15.123Z\"";
            return false;
        }
        if (!time_point_holds<Duration>(*tp)) {
            why = "must be a time from " + time_point_range_text<Duration>() +
                  " (the range of its type), not " + std::string(*s);
            return false;
        }
        out = std::chrono::floor<Duration>(*tp);
        return true;
    }
};

/// Encodes every described public member of `value` under its own name.
template <described_struct T>
boost::json::object to_json_object(const T& value) {
    boost::json::object obj;
    using members = boost::describe::describe_members<T, boost::describe::mod_public>;
    boost::mp11::mp_for_each<members>([&](auto m) {
        using member_type = std::remove_cvref_t<decltype(value.*m.pointer)>;
        obj.emplace(m.name, field_codec<member_type>::encode(value.*m.pointer));
    });
    return obj;
}

/// Decodes `obj` into `out` tolerantly: a missing member keeps the value `out` already has
/// (its default, for a freshly constructed `T`), an unknown member is ignored, so an older
/// client and a newer schema read each other's records. A member of the wrong type is an error
/// (`errc::invalid_field`, naming the member); `out` may then be partly assigned.
template <described_struct T>
diagnostics from_json_object(const boost::json::object& obj, T& out) {
    diagnostics result;
    using members = boost::describe::describe_members<T, boost::describe::mod_public>;
    boost::mp11::mp_for_each<members>([&](auto m) {
        if (result) return;
        const auto* jv = obj.if_contains(m.name);
        if (!jv) return;
        using member_type = std::remove_cvref_t<decltype(out.*m.pointer)>;
        std::string why;
        if (!field_codec<member_type>::decode(*jv, out.*m.pointer, why))
            result = {make_error_code(errc::invalid_field),
                      std::string("field '") + m.name + "' " + why};
    });
    return result;
}

/// Decodes a whole `T` tolerantly, starting from `T{}`; throws `sync_error` on a wrong type.
template <described_struct T>
T from_json(const boost::json::value& jv) {
    const auto* obj = jv.if_object();
    if (!obj) throw sync_error(make_error_code(errc::malformed_json), "expected a JSON object");
    T out{};
    if (auto d = from_json_object(*obj, out)) throw sync_error(d);
    return out;
}

} // namespace offsync
