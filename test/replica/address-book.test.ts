import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AddressBook } from '../../replica/transport.js';

describe('where a peer is dialled (AddressBook)', () => {
  it('a member restarted at a new address is reached there once it has said so', () => {
    const b = new AddressBook();
    assert.equal(b.resolve('n1', '10.0.0.2:12000'), '10.0.0.2:12000');
    b.announce('n1', '10.0.0.9:12000'); // back on its volume with a new IP; the configuration is older
    assert.equal(b.resolve('n1', '10.0.0.2:12000'), '10.0.0.9:12000');
  });

  it('a member re-added with a new address is reached at the configuration\'s, not at what its old process said', () => {
    const b = new AddressBook();
    b.announce('n1', '10.0.0.2:12000');
    assert.equal(b.resolve('n1', '10.0.0.2:12000'), '10.0.0.2:12000');
    // Its pod was replaced: removed and added anew at 10.0.0.7, which has said nothing yet.
    assert.equal(b.resolve('n1', '10.0.0.7:12000'), '10.0.0.7:12000');
    b.announce('n1', '10.0.0.7:12000');
    assert.equal(b.resolve('n1', '10.0.0.7:12000'), '10.0.0.7:12000');
  });

  it('an empty announcement changes nothing; an unknown peer has no address', () => {
    const b = new AddressBook();
    b.announce('n1', '');
    assert.equal(b.resolve('n1', undefined), undefined);
    assert.equal(b.resolve('n1', '10.0.0.2:12000'), '10.0.0.2:12000');
  });
});
