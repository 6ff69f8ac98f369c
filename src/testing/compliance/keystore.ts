import type { TestFn } from 'ava';
import type { Keystore } from '../../storage/keystore.js';

/** The behaviour every Keystore backend must show. */
export function keystoreComplianceTests(test: TestFn, name: string, factory: { setup(): Promise<Keystore>; teardown(k: Keystore): Promise<void> }): void {
  test(`${name}: put, get, del, batch and prefix listing`, async (t) => {
    const k = await factory.setup();
    try {
      t.is(await k.get('missing'), undefined);
      await k.put('a', { x: 1 });
      t.deepEqual(await k.get('a'), { x: 1 });
      await k.batch([
        { type: 'put', key: 'msg!2', value: 'two' },
        { type: 'put', key: 'msg!1', value: 'one' },
        { type: 'put', key: 'msh', value: 'not in prefix' },
        { type: 'del', key: 'a' },
      ]);
      t.is(await k.get('a'), undefined);
      t.deepEqual(await k.list('msg!'), [
        ['msg!1', 'one'],
        ['msg!2', 'two'],
      ]);
      t.deepEqual(await k.list('msg!', { limit: 1 }), [['msg!1', 'one']]);
      await k.del('msg!1');
      t.deepEqual((await k.list('msg!')).map(([key]) => key), ['msg!2']);
    } finally {
      await factory.teardown(k);
    }
  });

  test(`${name}: a transaction writes all of its writes at its end, or none if it throws`, async (t) => {
    const k = await factory.setup();
    try {
      await k.put('keep', 1);
      const seenInside = await k.transaction(async () => {
        await k.put('tx!a', 'A');
        await k.batch([{ type: 'put', key: 'tx!b', value: 'B' }, { type: 'del', key: 'keep' }]);
        return { a: await k.get('tx!a'), keep: await k.get('keep'), list: await k.list('tx!') };
      });
      t.deepEqual(seenInside, { a: 'A', keep: undefined, list: [['tx!a', 'A'], ['tx!b', 'B']] }, 'reads inside see the buffered writes');
      t.deepEqual(await k.list('tx!'), [['tx!a', 'A'], ['tx!b', 'B']]);
      t.is(await k.get('keep'), undefined);
      await t.throwsAsync(
        k.transaction(async () => {
          await k.put('tx!c', 'C');
          await k.del('tx!a');
          throw new Error('crash before the end');
        }),
        { message: 'crash before the end' },
      );
      t.is(await k.get('tx!c'), undefined, 'nothing of a failed transaction is written');
      t.is(await k.get('tx!a'), 'A');
    } finally {
      await factory.teardown(k);
    }
  });

  test(`${name}: bytes are kept as bytes, next to JSON, also in a transaction`, async (t) => {
    const k = await factory.setup();
    try {
      const bytes = Uint8Array.from({ length: 6000 }, (_, i) => i % 251);
      await k.put('bin!a', bytes);
      await k.put('bin!b', new Uint8Array(0));
      await k.put('bin!c', [0, 1]);
      const read = await k.get<Uint8Array>('bin!a');
      t.true(read instanceof Uint8Array);
      t.deepEqual(Array.from(read!), Array.from(bytes));
      read![0] = 99;
      t.is((await k.get<Uint8Array>('bin!a'))![0], 0, 'a read is a copy of what is stored');
      t.deepEqual(
        (await k.list('bin!')).map(([key, v]) => [key, v instanceof Uint8Array ? `bytes ${v.length}` : v]),
        [['bin!a', 'bytes 6000'], ['bin!b', 'bytes 0'], ['bin!c', [0, 1]]],
      );
      await k.transaction(async () => {
        await k.put('bin!d', Uint8Array.of(0, 7));
        t.deepEqual(Array.from((await k.get<Uint8Array>('bin!d'))!), [0, 7]);
      });
      t.deepEqual(Array.from((await k.get<Uint8Array>('bin!d'))!), [0, 7]);
    } finally {
      await factory.teardown(k);
    }
  });
}
