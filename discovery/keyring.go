package discovery

import (
	"bytes"
	"fmt"
	"slices"
)

// Key rotation, with the cluster talking throughout:
//
//  1. InstallKey(new) on every member; KeyStatus(new).Installed reaching
//     KeyStatus(new).Members says it is everywhere.
//  2. UseKey(new) on every member; members now encrypt with it, and all
//     can still decrypt the old one.
//  3. RemoveKey(old) on every member.
//
// A key used as primary before every member has installed it cuts the
// members without it off from this one until they install it.

// KeyStatus is the cluster's view of one key, from the key fingerprints
// each member gossips (never the keys themselves).
type KeyStatus struct {
	Members   int      // alive members seen
	Installed int      // members with the key installed
	Primary   int      // members encrypting with it
	Missing   []string // members without it, sorted
}

// InstallKey adds a key to this node's keyring, for decryption; UseKey
// makes it the one used to encrypt. Installing a key twice is not an
// error. At most 8 keys may be installed.
func (n *Node) InstallKey(key []byte) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("InstallKey: %w", err)
	}
	return n.keyChange(func() error {
		if !slices.ContainsFunc(n.keyring.GetKeys(), func(k []byte) bool { return bytes.Equal(k, key) }) && len(n.keyring.GetKeys()) >= maxKeys {
			return invalid("InstallKey: %d keys installed already; remove one first", maxKeys)
		}
		return n.keyring.AddKey(key)
	})
}

// UseKey makes an installed key the primary, used to encrypt everything
// this node sends.
func (n *Node) UseKey(key []byte) error {
	return n.keyChange(func() error {
		if err := n.keyring.UseKey(key); err != nil {
			return invalid("UseKey: %v", err)
		}
		return nil
	})
}

// RemoveKey removes a key; the primary key cannot be removed.
func (n *Node) RemoveKey(key []byte) error {
	return n.keyChange(func() error {
		if bytes.Equal(n.keyring.GetPrimaryKey(), key) {
			return invalid("RemoveKey: that is the primary key; UseKey another first")
		}
		if err := n.keyring.RemoveKey(key); err != nil {
			return invalid("RemoveKey: %v", err)
		}
		return nil
	})
}

// keyChange applies a keyring change and gossips the new fingerprints.
func (n *Node) keyChange(f func() error) error {
	if n.keyring == nil {
		return ErrNoEncryption
	}
	return n.change(func(m *meta) error {
		if err := f(); err != nil {
			return err
		}
		m.keys = fingerprints(n.keyring)
		return nil
	})
}

// KeyStatus reports how far a key has spread, as this node sees the
// cluster.
func (n *Node) KeyStatus(key []byte) KeyStatus {
	fp := fingerprint(key)
	n.mu.Lock()
	defer n.mu.Unlock()
	var s KeyStatus
	for name, e := range n.members {
		s.Members++
		i := slices.Index(e.meta.keys, fp)
		switch {
		case i < 0:
			s.Missing = append(s.Missing, name)
		default:
			s.Installed++
			if i == e.meta.primary {
				s.Primary++
			}
		}
	}
	slices.Sort(s.Missing)
	return s
}
