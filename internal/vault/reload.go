package vault

import (
	"context"
	"fmt"
)

// Reload reads again what another process sharing the storage may have
// changed (a cluster's vault in PostgreSQL): data keys added since (a
// rotate-dek elsewhere), the peppers (rotate-pepper, retire-pepper), and
// drops every cached secret. Data keys already held are kept as they are;
// a new one that the master key cannot unwrap (another node rotated the
// KEK to a key this node was not given) is an error and changes nothing.
func (v *Vault) Reload(ctx context.Context) error {
	v.wmu.Lock()
	defer v.wmu.Unlock()
	wrapped, err := v.st.DataKeys(ctx)
	if err != nil {
		return fmt.Errorf("vault: reload: data keys: %w", err)
	}
	ks := v.keys.Load()
	next := ks
	for _, w := range wrapped {
		if pk := ks.byPurpose[w.Purpose]; pk != nil && pk.versions[w.Version] != nil {
			continue
		}
		raw, err := ks.provider.UnwrapKey(ctx, w.Wrapped, dekLabel(w.Purpose, w.Version))
		if err != nil {
			return fmt.Errorf("vault: reload: data key %s v%d: %w", w.Purpose, w.Version, err)
		}
		k, err := newDataKey(w.Purpose, w.Version, raw)
		if err != nil {
			return err
		}
		next = next.with(k)
	}
	v.keys.Store(next)
	if err := v.loadPeppers(ctx); err != nil {
		return err
	}
	v.cmu.Lock()
	clear(v.cache)
	v.cgen++
	v.cmu.Unlock()
	return nil
}
