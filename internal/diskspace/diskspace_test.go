package diskspace

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestThresholdIsTheSmallerOfBytesAndShare(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		total uint64
		want  uint64
	}{
		{"large disk: the bytes", Config{MinFreeBytes: 1 << 30, MinFreePercent: 5}, 1 << 40, 1 << 30},
		{"small disk: the share", Config{MinFreeBytes: 1 << 30, MinFreePercent: 5}, 10 << 30, 512 << 20},
		{"bytes only", Config{MinFreeBytes: 1 << 20}, 1 << 40, 1 << 20},
		{"share only", Config{MinFreePercent: 10}, 1000, 100},
		{"neither", Config{}, 1 << 40, 0},
	} {
		if got := tc.cfg.Threshold(tc.total); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestLowSpaceIsReportedAndRecoveredWithoutRestart(t *testing.T) {
	var p Manual
	p.Set(10<<30, 100<<30)
	var changes []error
	w, err := New("/data", Config{MinFreeBytes: 1 << 30, MinFreePercent: 5, Interval: time.Millisecond}, &p, func(err error) { changes = append(changes, err) })
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Low(); err != nil {
		t.Fatalf("10 GiB free: %v", err)
	}
	p.Set(100<<20, 100<<30)
	if err := w.Low(); err != nil {
		t.Fatalf("Low probed without a Sample: %v", err)
	}
	w.Sample()
	err = w.Low()
	if !errors.Is(err, ErrLowSpace) || !strings.Contains(err.Error(), "100.0 MiB free") || !strings.Contains(err.Error(), "1.0 GiB") {
		t.Fatalf("100 MiB free: %v", err)
	}
	p.Set(2<<30, 100<<30)
	w.Sample()
	if err := w.Low(); err != nil {
		t.Fatalf("space back: %v", err)
	}
	if len(changes) != 2 || changes[0] == nil || changes[1] != nil {
		t.Fatalf("changes %v, want [low, nil]", changes)
	}
}

func TestAFailingProbeCountsAsLow(t *testing.T) {
	var p Manual
	p.Fail(errors.New("EIO"))
	w, err := New("/data", Config{MinFreeBytes: 1, Interval: time.Second}, &p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Low(); !errors.Is(err, ErrLowSpace) {
		t.Fatalf("failing probe: %v", err)
	}
}

func TestRunSamplesOnItsTicker(t *testing.T) {
	var p Manual
	p.Set(1<<30, 2<<30)
	w, _ := New("/data", Config{MinFreeBytes: 1 << 20, Interval: time.Millisecond}, &p, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	p.Set(0, 2<<30)
	deadline := time.Now().Add(5 * time.Second)
	for w.Low() == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if w.Low() == nil {
		t.Fatal("Run did not sample")
	}
}

func TestStatfsMeasuresARealFilesystem(t *testing.T) {
	avail, total, err := Statfs{}.Space(t.TempDir())
	if err != nil {
		t.Skip(err)
	}
	if total == 0 || avail > total {
		t.Fatalf("avail %d of %d", avail, total)
	}
}

func TestInvalidConfigIsRefused(t *testing.T) {
	for _, c := range []Config{{Interval: 0}, {Interval: time.Second, MinFreePercent: 101}, {Interval: time.Second, MinFreePercent: -1}} {
		if _, err := New("/", c, &Manual{}, nil); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func BenchmarkLow(b *testing.B) {
	var p Manual
	p.Set(1<<30, 2<<30)
	w, _ := New("/", Config{MinFreeBytes: 1, Interval: time.Second}, &p, nil)
	b.ReportAllocs()
	for b.Loop() {
		_ = w.Low()
	}
}
