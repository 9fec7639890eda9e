package gateway

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends ev as one JSON object, exactly as an encoding/json
// Encoder with SetEscapeHTML(false) writes an Event (same keys, order and
// omissions; strings escaped the same way, invalid UTF-8 replaced by
// U+FFFD; no trailing newline), without reflection.
func (ev *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"kind":`...)
	b = appendJSONString(b, string(ev.Kind))
	b = append(b, `,"time":"`...)
	b = ev.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","request_id":`...)
	b = appendJSONString(b, ev.RequestID)
	b = append(b, `,"via":`...)
	b = appendJSONString(b, ev.Via)
	if ev.Public {
		b = append(b, `,"public":true`...)
	}
	b = appendOpt(b, `,"token_id":`, ev.TokenID)
	b = appendOpt(b, `,"subject":`, ev.Subject)
	b = appendOpt(b, `,"source_ip":`, ev.SourceIP)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, ev.Method)
	b = appendOpt(b, `,"upstream":`, ev.Upstream)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, ev.Path)
	b = appendOpt(b, `,"query":`, ev.Query)
	b = appendOpt(b, `,"page":`, ev.Page)
	b = appendOpt(b, `,"interaction":`, ev.Interaction)
	b = appendOpt(b, `,"resource":`, ev.Resource)
	b = appendOpt(b, `,"scope":`, ev.Scope)
	b = appendOpt(b, `,"purpose":`, ev.Purpose)
	b = appendOpt(b, `,"patient":`, ev.Patient)
	if ev.BreakGlass {
		b = append(b, `,"break_glass":true`...)
	}
	b = appendOpt(b, `,"justification":`, ev.Justification)
	b = appendOpt(b, `,"reason":`, ev.Reason)
	b = appendOpt(b, `,"notes":`, ev.Notes)
	if ev.Status != 0 {
		b = strconv.AppendInt(append(b, `,"status":`...), int64(ev.Status), 10)
	}
	if ev.BytesIn != 0 {
		b = strconv.AppendInt(append(b, `,"bytes_in":`...), ev.BytesIn, 10)
	}
	if ev.BytesOut != 0 {
		b = strconv.AppendInt(append(b, `,"bytes_out":`...), ev.BytesOut, 10)
	}
	if ev.Duration != 0 {
		b = strconv.AppendInt(append(b, `,"duration_ns":`...), int64(ev.Duration), 10)
	}
	return append(b, '}')
}

func appendOpt(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return appendJSONString(append(b, key...), v)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string the way encoding/json does
// with HTML escaping off.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
