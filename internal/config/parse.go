package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxFileSize bounds what Load reads; a configuration is a few kilobytes.
const maxFileSize = 1 << 20

// maxListLen bounds every list of the file (upstreams, routes, ...).
const maxListLen = 1000

// Load reads the configuration file at path and returns it as Parse does,
// with path in each *Error.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("config: %s: larger than %d bytes; is this the configuration file?", path, maxFileSize)
	}
	c, errs := parse(data)
	for _, e := range errs {
		e.File = path
	}
	if len(errs) > 0 {
		return nil, join(errs)
	}
	return c, nil
}

// Parse decodes a configuration over the defaults and validates it for a
// server that is not in dev mode (Validate(false)). Errors are described in
// the package documentation.
func Parse(data []byte) (*Config, error) {
	c, errs := parse(data)
	if len(errs) > 0 {
		return nil, join(errs)
	}
	return c, nil
}

func parse(data []byte) (*Config, []*Error) {
	if e := checkText(data); e != nil {
		return nil, []*Error{e}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, []*Error{syntaxError(data, err)}
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, []*Error{syntaxError(data, err)}
	default:
		return nil, []*Error{{Line: next.Line, Msg: "a second YAML document (after ---); the file must hold exactly one"}}
	}

	c := Default()
	d := &decoder{pos: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}}
	if len(doc.Content) > 0 {
		d.value("", doc.Content[0], reflect.ValueOf(c).Elem())
	}
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	if errs := d.locate(c.check(false, d.isSet)); len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// decoder fills a struct from a yaml.Node tree, strictly: unknown and
// duplicate keys and ill-typed values are errors, each with its key path
// and position. It records the value node of every key it saw.
type decoder struct {
	pos  map[string]*yaml.Node // key path → value node ("" → the document's root)
	keys map[string]*yaml.Node // key path → key node
	errs []*Error
}

func (d *decoder) fail(path string, n *yaml.Node, format string, args ...any) {
	d.errs = append(d.errs, &Error{Line: n.Line, Column: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// value decodes n into v, which is addressable. A null value keeps what v
// holds (the default).
func (d *decoder) value(path string, n *yaml.Node, v reflect.Value) {
	n = resolve(n)
	d.pos[path] = n
	if isNull(n) {
		return
	}
	if v.Addr().Type().Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.fail(path, n, "%s", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.mapping(path, n, v)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || !plainTags[n.ShortTag()] {
			d.fail(path, n, "must be a string")
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.fail(path, n, "must be true or false")
			return
		}
		v.SetBool(b)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(path, n, "must be a list")
			return
		}
		if len(n.Content) > maxListLen {
			d.fail(path, n, "at most %d entries", maxListLen)
			return
		}
		if len(n.Content) == 0 {
			v.SetZero()
			return
		}
		list := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, e := range n.Content {
			d.value(fmt.Sprintf("%s[%d]", path, i), e, list.Index(i))
		}
		v.Set(list)
	case reflect.Int, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
			d.fail(path, n, "must be an integer")
			return
		}
		if v.OverflowInt(i) {
			d.fail(path, n, "%d is out of range", i)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") || n.Decode(&f) != nil {
			d.fail(path, n, "must be a number")
			return
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			d.fail(path, n, "must be a finite number")
			return
		}
		v.SetFloat(f)
	default:
		panic(fmt.Sprintf("config: field %s has unsupported kind %s", path, v.Kind()))
	}
}

// plainTags are the resolved tags of scalars taken as strings verbatim:
// `data_dir: 2024` is the directory "2024".
var plainTags = map[string]bool{"!!str": true, "!!int": true, "!!float": true, "!!bool": true, "!!timestamp": true}

func (d *decoder) mapping(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		what := "must be a mapping of keys"
		if path == "" {
			what = "the top level must be a mapping of keys"
		}
		d.fail(path, n, "%s: %s", what, strings.Join(fieldNames(v.Type()), ", "))
		return
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			d.fail(joinPath(path, k.Value), k, "merge keys (<<) are not supported")
			continue
		}
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			d.fail(path, k, "keys must be plain strings")
			continue
		}
		p := joinPath(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.fail(p, k, "duplicate key (first at line %d)", first.Line)
			continue
		}
		seen[k.Value] = k
		f, ok := fieldByTag(v, k.Value)
		if !ok {
			d.fail(p, k, "unknown key; expected one of: %s", strings.Join(fieldNames(v.Type()), ", "))
			continue
		}
		d.keys[p] = k
		d.value(p, val, f)
	}
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

func fieldByTag(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		if tagName(t.Field(i)) == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func fieldNames(t reflect.Type) []string {
	names := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		names = append(names, tagName(t.Field(i)))
	}
	return names
}

// isSet reports whether the file gave path a non-null value.
func (d *decoder) isSet(path string) bool {
	n, ok := d.pos[path]
	return ok && !isNull(n)
}

// locate turns validation problems into errors positioned at the value of
// their key; for a key with no value, at the key; for a key that is absent,
// at the nearest key above it that is present, or line 1 at the top level.
func (d *decoder) locate(problems []problem) []*Error {
	errs := make([]*Error, 0, len(problems))
	for _, p := range problems {
		e := &Error{Path: p.path, Msg: p.msg, Line: 1}
		if n := d.at(p.path); n != nil {
			e.Line, e.Column = n.Line, n.Column
		}
		errs = append(errs, e)
	}
	return errs
}

func (d *decoder) at(path string) *yaml.Node {
	if d.isSet(path) {
		return d.pos[path]
	}
	for ; path != ""; path = parentPath(path) {
		if k, ok := d.keys[path]; ok {
			return k
		}
		if n, ok := d.pos[path]; ok && strings.HasSuffix(path, "]") {
			return n // an element of a list
		}
	}
	return nil
}

// parentPath returns the path of the key or list holding path:
// "a.b" → "a", "a.b[2]" → "a.b", "a" → "".
func parentPath(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i > 0 {
			return path[:i]
		}
	}
	return path[:max(strings.LastIndexByte(path, '.'), 0)]
}
