// The Criteo converter's fast parser of well-formed lines, a plain C function
// loaded with ctypes (see src/data/criteo_native.py). It reads what
// parse_lines in src/data/criteo_parse.py reads, to the same values, and
// gives up on the first line that parser would call malformed: the caller
// then parses the chunk with NumPy, which describes the line.
//
// A line: label '0' or '1', 13 dense fields (empty, or an optional '-' and
// decimal digits), 26 categorical fields (empty, or 8 hex digits of either
// case), separated by tabs and ended by '\n'; trailing empty categorical
// fields may be left out. Outputs (n = the lines): label int8 (n), dense
// int64 (n x 13, empty = 0), cat int64 (n x 26, empty = -1); label and dense
// may be null (not decoded, still checked).
#include <cstdint>
#include <cstring>

namespace {

constexpr int kDense = 13;
constexpr int kCat = 26;
constexpr int kMaxDigits = 18;   // |value| < 10^18 fits int64 (longer: NumPy's slow path)

inline bool Ends(uint8_t c) { return c == '\t' || c == '\n'; }

// Hex digit values by byte; 0x80 for any other byte.
struct HexTable {
  uint8_t value[256];
  constexpr HexTable() : value() {
    for (int c = 0; c < 256; ++c) value[c] = 0x80;
    for (int c = 0; c < 10; ++c) value['0' + c] = static_cast<uint8_t>(c);
    for (int c = 0; c < 6; ++c) {
      value['a' + c] = static_cast<uint8_t>(10 + c);
      value['A' + c] = static_cast<uint8_t>(10 + c);
    }
  }
};
constexpr HexTable kHex;

// One dense field at p: its value, p moved to its terminator; false if malformed.
inline bool Dense(const uint8_t *&p, int64_t *value) {
  bool negative = *p == '-';
  p += negative;
  int64_t v = 0;
  int digits = 0;
  for (uint8_t d; (d = static_cast<uint8_t>(*p - '0')) < 10; ++p) {
    if (++digits > kMaxDigits) return false;
    v = v * 10 + d;
  }
  if (!Ends(*p) || (negative && digits == 0)) return false;
  *value = negative ? -v : v;
  return true;
}

// One categorical field at p (before end): its value (-1 if empty), p moved
// to its terminator. The 8 digits are read without a branch each.
inline bool Cat(const uint8_t *&p, const uint8_t *end, int64_t *value) {
  if (Ends(*p)) {
    *value = -1;
    return true;
  }
  if (end - p < 9) return false;                       // no room for 8 digits and a terminator
  uint32_t v = 0;
  uint8_t bad = 0;
  for (int i = 0; i < 8; ++i) {
    uint8_t h = kHex.value[p[i]];
    bad |= h;
    v = (v << 4) | (h & 0x0F);
  }
  p += 8;
  *value = v;
  return !(bad & 0x80) && Ends(*p);
}

}  // namespace

// 0 when all `lines` lines of data[0, size) are well formed and decoded; -1
// at the first that is not (the outputs are then partly written).
extern "C" int64_t criteo_parse(const uint8_t *data, int64_t size, int64_t lines,
                                int8_t *label, int64_t *dense, int64_t *cat) {
  const uint8_t *p = data;
  const uint8_t *end = data + size;
  int64_t scratch[kDense];
  for (int64_t i = 0; i < lines; ++i) {
    if (end - p < 2 || (p[0] != '0' && p[0] != '1') || p[1] != '\t') return -1;
    if (label != nullptr) label[i] = static_cast<int8_t>(p[0] - '0');
    p += 2;
    int64_t *d = dense != nullptr ? dense + i * kDense : scratch;
    for (int f = 0; f < kDense; ++f) {
      if (!Dense(p, d + f)) return -1;
      if (*p++ == '\n' && f < kDense - 1) return -1;   // the line ends inside the dense block
    }
    int64_t *c = cat + i * kCat;
    int f = 0;
    if (p[-1] == '\t') {
      for (; f < kCat; ++f) {
        if (!Cat(p, end, c + f)) return -1;
        if (*p++ == '\n') {
          ++f;
          break;
        }
        if (f == kCat - 1) return -1;                   // a tab after the last field: too many
      }
    }
    for (; f < kCat; ++f) c[f] = -1;                    // trailing fields left out
  }
  return p == end ? 0 : -1;
}

// The '\n' bytes of data[0, size): the lines criteo_parse is given.
extern "C" int64_t criteo_count_lines(const uint8_t *data, int64_t size) {
  int64_t lines = 0;
  const uint8_t *end = data + size;
  for (const void *p = data; p != nullptr; ++lines) {
    p = std::memchr(p, '\n', end - static_cast<const uint8_t *>(p));
    if (p == nullptr) break;
    p = static_cast<const uint8_t *>(p) + 1;
  }
  return lines;
}
